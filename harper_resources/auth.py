"""Handshake authentication and origin checks for resource sockets.

- ``BasicAuthMiddleware``: ``Authorization: Basic`` checked with Django's
  ``authenticate()``, for scripts and other non-browser clients.
- ``ResourceAuthMiddlewareStack(inner)``: the session cookie (browsers, Channels'
  ``AuthMiddlewareStack``) plus Basic; Basic wins when both are sent.
- ``OriginValidator(inner)``: refuses a browser page from another site (cross-site
  WebSocket hijacking) by checking ``Origin`` against ``ALLOWED_HOSTS``.

Credentials that are sent but wrong are never taken as an anonymous visit: the
resource closes with 3000 whatever its ``allow_read`` says.
"""

from __future__ import annotations

import base64
import binascii
from typing import Any

from channels.auth import AuthMiddlewareStack
from channels.db import database_sync_to_async
from channels.security.websocket import AllowedHostsOriginValidator
from channels.security.websocket import OriginValidator as ChannelsOriginValidator
from django.contrib.auth import authenticate
from django.contrib.auth.models import AnonymousUser

#: Scope key set when the client sent credentials that did not authenticate.
AUTH_FAILED = "harper_resources.auth_failed"


def _basic_credentials(scope: dict[str, Any]) -> tuple[str, str] | bool | None:
    """``(username, password)`` from an ``Authorization: Basic`` header; None if there is
    no such header; False if it is malformed."""
    for name, value in scope.get("headers", ()):
        if name.lower() != b"authorization":
            continue
        scheme, _, encoded = value.partition(b" ")
        if scheme.lower() != b"basic":
            return None
        try:
            username, sep, password = base64.b64decode(encoded.strip(), validate=True).decode("utf-8").partition(":")
        except (binascii.Error, UnicodeDecodeError):
            return False
        return (username, password) if sep else False
    return None


class BasicAuthMiddleware:
    """Sets ``scope["user"]`` from HTTP Basic credentials, when the client sends them.

    Wrong or malformed credentials set ``scope[AUTH_FAILED]`` and an anonymous user, and
    the resource closes with 3000. Without an ``Authorization: Basic`` header the scope
    is passed on unchanged (so a session user stays).
    """

    def __init__(self, inner: Any) -> None:
        self.inner = inner

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> Any:
        credentials = _basic_credentials(scope)
        if credentials is not None:
            scope = dict(scope)
            user = None
            if credentials:
                username, password = credentials  # type: ignore[misc]
                user = await database_sync_to_async(authenticate)(None, username=username, password=password)
            if user is None or not user.is_active:
                scope["user"] = AnonymousUser()
                scope[AUTH_FAILED] = True
            else:
                scope["user"] = user
        return await self.inner(scope, receive, send)


def ResourceAuthMiddlewareStack(inner: Any) -> Any:
    """Session-cookie authentication for browsers, then HTTP Basic for other clients."""
    return AuthMiddlewareStack(BasicAuthMiddleware(inner))


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


def OriginValidator(inner: Any) -> NonBrowserOriginValidator:
    """Refuse handshakes whose ``Origin`` is not one of the hosts Channels'
    ``AllowedHostsOriginValidator`` allows (``ALLOWED_HOSTS``, with its ``DEBUG``
    defaults). Handshakes without ``Origin`` (non-browser clients) are let through."""
    return NonBrowserOriginValidator(inner, AllowedHostsOriginValidator(inner).allowed_origins)
