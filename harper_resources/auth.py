"""Handshake authentication and origin checks for resource sockets.

- ``BasicAuthMiddleware``: ``Authorization: Basic`` checked with Django's
  ``authenticate()`` (hashed off the shared database thread, verified results cached
  briefly: see ``credentials``), or ``Authorization: Bearer`` with a signed token (see
  ``tokens``), for scripts and other non-browser clients.
- ``ResourceAuthMiddlewareStack(inner)``: the session cookie (browsers) plus Basic or
  Bearer; those win when sent too. A session login costs one database hop (session and
  user read together: ``handshake``); the scope keeps the user, not the session's data.
- ``OriginValidator(inner)``: refuses a browser page from another site (cross-site
  WebSocket hijacking) by checking ``Origin`` against ``ALLOWED_HOSTS``.

Credentials that are sent but wrong are never taken as an anonymous visit: the
resource closes with 3000 whatever its ``allow_read`` says.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Awaitable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlparse

from channels.security.websocket import AllowedHostsOriginValidator, WebsocketDenier
from channels.security.websocket import OriginValidator as ChannelsOriginValidator

from . import credentials, tokens
from .handover import hands_over

#: Scope key set when the client sent credentials that did not authenticate.
AUTH_FAILED = "harper_resources.auth_failed"
#: Scope key of a user logged in by Basic or Bearer: ``(method, password fingerprint)``,
#: so an open socket can be checked again later (``reauth``).
AUTH_CREDENTIAL = "harper_resources.credential"


def _authorization(scope: dict[str, Any]) -> tuple[bytes, bytes] | None:
    """``(scheme in lower case, the rest)`` of the ``Authorization`` header, if any."""
    for name, value in scope.get("headers", ()):
        if name.lower() == b"authorization":
            scheme, _, rest = value.partition(b" ")
            return scheme.lower(), rest.strip()
    return None


def _basic_credentials(scope: dict[str, Any]) -> tuple[str, str] | bool | None:
    """``(username, password)`` from an ``Authorization: Basic`` header; None if there is
    no such header; False if it is malformed."""
    header = _authorization(scope)
    if header is not None:
        scheme, encoded = header
        if scheme != b"basic":
            return None
        try:
            username, sep, password = base64.b64decode(encoded.strip(), validate=True).decode("utf-8").partition(":")
        except (binascii.Error, UnicodeDecodeError):
            return False
        return (username, password) if sep else False
    return None


def _bearer_token(scope: dict[str, Any]) -> str | None:
    """The token of an ``Authorization: Bearer`` header (possibly empty), or None."""
    header = _authorization(scope)
    if header is None or header[0] != b"bearer":
        return None
    return header[1].decode("latin-1")


class BasicAuthMiddleware:
    """Sets ``scope["user"]`` from HTTP Basic credentials or a Bearer token, when the
    client sends them.

    Wrong, malformed or expired credentials set ``scope[AUTH_FAILED]`` and an anonymous
    user, and the resource closes with 3000. Without an ``Authorization: Basic`` or
    ``Bearer`` header the scope is passed on unchanged (so a session user stays).
    """

    def __init__(self, inner: Any) -> None:
        self.inner = inner

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> Any:
        login = await header_login(scope)
        if login is not None:
            scope = dict(scope)
            user, credential = login
            if user is None:
                # Imported here: this module loads before django.setup() in an asgi.py.
                from django.contrib.auth.models import AnonymousUser

                scope["user"] = AnonymousUser()
                scope[AUTH_FAILED] = True
            else:
                scope["user"] = user
                scope[AUTH_CREDENTIAL] = credential
        return await self.inner(scope, receive, send)


def sends_credentials(scope: dict[str, Any]) -> bool:
    """Does the request send an ``Authorization: Basic`` or ``Bearer`` header (well formed
    or not)? Exactly when ``header_login`` returns something other than None."""
    return _basic_credentials(scope) is not None or _bearer_token(scope) is not None


#: A header login: ``(user, (method, password fingerprint))``, or ``(None, None)`` when
#: the credentials are wrong, malformed or expired.
Login = tuple[Any, tuple[str, str] | None]


@dataclass(frozen=True)
class UserCheck:
    """A login by header whose one step left is the re-check of the user row: user
    ``pk``, if still active with password fingerprint ``fingerprint`` (a remembered Basic
    login: ``basic`` holds its credentials; a Bearer token: None)."""

    method: str
    pk: Any
    fingerprint: str
    basic: tuple[str, str] | None = field(default=None, repr=False)  # a password: kept out of reprs and logs

    def user(self) -> Any:
        """The user, or None when the row no longer matches. Sync: one query, in a thread."""
        return credentials.active_user(self.pk, self.fingerprint)

    async def login(self) -> Login:
        """The login: ``user()`` on the handshake thread, ``after_failed_check`` if need be."""
        user = await credentials.active_user_checked(self.pk, self.fingerprint)
        if user is None:
            return await self.after_failed_check()
        return user, (self.method, self.fingerprint)

    async def after_failed_check(self) -> Login:
        """The login once ``user()`` found nobody: for Basic, the credentials checked in
        full (the password may be right for a re-hashed one); a Bearer token fails."""
        user = None if self.basic is None else await credentials.verify_basic(*self.basic)
        return (None, None) if user is None else (user, (self.method, credentials.fingerprint(user)))


#: Scope key of a ``UserCheck`` left to the resource (``header_claim``): a REST write
#: does it in its own thread hop, then sets the login (``handshake.set_login``).
USER_CHECK = "harper_resources.user_check"


async def header_claim(scope: dict[str, Any]) -> Login | UserCheck | None:
    """What an ``Authorization: Basic`` or ``Bearer`` header claims: None without such a
    header; a ``UserCheck`` when only the re-check of the user row is left (a remembered
    Basic login, a Bearer token); else the login (a Basic password checked in full, or
    ``(None, None)``)."""
    basic = _basic_credentials(scope)
    token = _bearer_token(scope) if basic is None else None
    if basic is None and token is None:
        return None
    if basic:
        username, password = basic  # type: ignore[misc]
        cached = credentials.cached_login(username, password)
        if cached is not None:
            return UserCheck("basic", *cached, basic=(username, password))
        user = await credentials.verify_basic(username, password)
        return (None, None) if user is None else (user, ("basic", credentials.fingerprint(user)))
    claims = tokens.read_token(token) if token else None
    return (None, None) if claims is None else UserCheck("bearer", *claims)


async def header_login(scope: dict[str, Any]) -> Login | None:
    """The login of an ``Authorization: Basic`` or ``Bearer`` header (``header_claim``
    with its re-check done): None without such a header."""
    claim = await header_claim(scope)
    return await claim.login() if isinstance(claim, UserCheck) else claim


def ResourceAuthMiddlewareStack(inner: Any) -> Any:
    """Session-cookie authentication for browsers, HTTP Basic or Bearer for other clients:
    ``handshake.ResourceAuthMiddleware`` (one middleware, one database hop for a session
    login and none without one, for WebSocket and HTTP scopes alike; see there what the
    scope holds)."""
    from .handshake import ResourceAuthMiddleware

    return ResourceAuthMiddleware(inner)


class NonBrowserOriginValidator(ChannelsOriginValidator):  # type: ignore[misc]
    """Channels' ``OriginValidator``, except that a handshake with no ``Origin`` header
    is let through.

    Browsers always send ``Origin`` on a WebSocket handshake, so a page of another site
    is still refused (HTTP 403). A client without ``Origin`` is not a browser, cannot be
    used for cross-site hijacking, and must authenticate like any other.
    """

    def valid_origin(self, parsed_origin: Any) -> bool:
        if parsed_origin is None:
            return True
        return bool(super().valid_origin(parsed_origin))

    @hands_over
    def __call__(self, scope: Any, receive: Any, send: Any) -> Awaitable[None]:
        """Channels' check, answered at once: the application's coroutine (or the
        denier's) is returned, not awaited in one of this validator's own, so an open
        socket keeps no frame of it."""
        if scope["type"] != "websocket":
            raise ValueError("You cannot use OriginValidator on a non-WebSocket connection")
        parsed_origin = None
        for name, value in scope.get("headers", ()):
            if name == b"origin":
                try:
                    parsed_origin = urlparse(value.decode("latin1"))
                except UnicodeDecodeError:
                    pass
        if self.valid_origin(parsed_origin):
            return self.application(scope, receive, send)  # type: ignore[no-any-return]
        return WebsocketDenier()(scope, receive, send)  # type: ignore[no-any-return]


def OriginValidator(inner: Any) -> NonBrowserOriginValidator:
    """Refuse handshakes whose ``Origin`` is not one of the hosts Channels'
    ``AllowedHostsOriginValidator`` allows (``ALLOWED_HOSTS``, with its ``DEBUG``
    defaults). Handshakes without ``Origin`` (non-browser clients) are let through."""
    return NonBrowserOriginValidator(inner, AllowedHostsOriginValidator(inner).allowed_origins)
