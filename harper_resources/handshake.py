"""Cheap handshakes: the login found in one database hop, public ``allow_read`` in none.

- ``ResourceAuthMiddleware(inner)``: what ``auth.ResourceAuthMiddlewareStack`` builds. For
  a WebSocket it does in one middleware, with one copy of the scope, what Channels'
  ``CookieMiddleware``, ``SessionMiddleware`` and ``AuthMiddleware`` plus our
  ``BasicAuthMiddleware`` did: ``Authorization: Basic``/``Bearer`` when sent (and then no
  session read at all), else the session cookie: the session and its user are read in
  ONE call on the handshake thread (``executors.handshake_reads``). HTTP requests (REST,
  event streams) the same way: none of them writes the session, so Channels'
  session-saving ``send`` is not needed. It hands back the inner application's coroutine
  instead of awaiting it in a frame of its own: without a login at once; with one, to a
  ``Resource`` its router routes to, which logs in first (``PENDING_LOGIN``); any other
  application is called once the login is done, under a frame of this middleware. A
  REST write re-checks a remembered Basic login (or a Bearer token's user) in the same
  thread hop as the write (``auth.USER_CHECK``), not in one of its own.
- ``allow(check, user)``: calls ``allow_read``: an ``async def`` on the event loop, a
  ``def`` whose body is only ``return <constant>`` (``return True``) directly, any other
  ``def`` in a thread (``database_sync_to_async``), where it may use the database.

What an inner application finds in the scope (WebSocket and HTTP):

- ``scope["user"]``: the user (a model instance, never a lazy object), or ``AnonymousUser``;
- ``scope["session"]``: a ``SessionStore`` of the cookie's session key (None when there is
  no valid session). Only the key is held: the handshake reads the session once to find
  the user and keeps none of its data, so reading ``scope["session"]`` loads it again,
  which is a database read (do it from sync code in a thread). Nothing is written: a
  session whose auth hash no longer matches (password changed) logs in nobody, and is
  left for Django's HTTP middleware to flush;
- ``scope["cookies"]``: the request's cookies, as Channels' ``CookieMiddleware`` sets them.
"""

from __future__ import annotations

import dis
import functools
import inspect
import types
from collections.abc import Awaitable
from importlib import import_module
from typing import Any

from channels.db import database_sync_to_async
from django.conf import settings as django_settings
from django.contrib.auth import BACKEND_SESSION_KEY, HASH_SESSION_KEY, SESSION_KEY, get_user_model, load_backend
from django.contrib.sessions.backends import db as db_sessions
from django.core.exceptions import ValidationError
from django.db import connections, router
from django.http import parse_cookie
from django.utils import timezone
from django.utils.crypto import constant_time_compare

from . import auth, executors, tables
from .handover import hands_over


def session_store(key: str | None) -> Any:
    """A ``SessionStore`` of ``key`` (the project's ``SESSION_ENGINE``), not loaded."""
    return import_module(django_settings.SESSION_ENGINE).SessionStore(key)


def session_hash_holds(user: Any, stored: Any) -> bool:
    """Does a session's auth hash ``stored`` still match ``user`` (current secret or a
    fallback)? True for a user model without session hashes."""
    if not hasattr(user, "get_session_auth_hash"):
        return True
    if not isinstance(stored, str) or not stored:
        return False
    hashes = [user.get_session_auth_hash()]
    fallbacks = getattr(user, "get_session_auth_fallback_hash", None)
    if fallbacks is not None:
        hashes.extend(fallbacks())
    return any(constant_time_compare(stored, h) for h in hashes)


def session_user(key: str) -> tuple[Any, Any]:
    """``(store, user)`` for the session ``key``: the store not loaded (its key None if
    the session does not exist), and the active user it logs in, or None. Sync: one
    session read and one user read, as Django's ``auth.get_user`` does them, without
    writing anything."""
    store = session_store(key)
    data = load_session(store)
    try:
        user_id = get_user_model()._meta.pk.to_python(data[SESSION_KEY])
        backend_path = data[BACKEND_SESSION_KEY]
    except (KeyError, ValidationError):
        return store, None
    if backend_path not in django_settings.AUTHENTICATION_BACKENDS:
        return store, None
    from django.contrib.auth.backends import ModelBackend  # needs the app registry

    backend: Any = load_backend(backend_path)
    if type(backend).get_user is ModelBackend.get_user:
        # ModelBackend.get_user's own read, as one plain SELECT (no query compiling).
        user = tables.read_default(get_user_model(), user_id)
        if user is not None and not backend.user_can_authenticate(user):
            user = None
    else:
        user = backend.get_user(user_id)
    if user is None or not session_hash_holds(user, data.get(HASH_SESSION_KEY)):
        return store, None
    return store, user


_session_sql: dict[tuple[str, str], str] = {}


def load_session(store: Any) -> dict[str, Any]:
    """``store.load()``. For Django's database backend itself (not a subclass) the same
    query as raw SQL, built once per table (one query per handshake without the ORM's
    compiling): the data of the unexpired session, else ``{}`` and the key None."""
    if type(store) is not db_sessions.SessionStore:
        data: dict[str, Any] = store.load()
        return data
    key = store.session_key
    if not key:
        return {}
    model: Any = db_sessions.SessionStore.get_model_class()  # not ``store.model``: cached on the store, kept
    connection = connections[router.db_for_read(model)]
    sql = _session_sql.get((connection.alias, model._meta.db_table))
    if sql is None:
        qn = connection.ops.quote_name
        field = model._meta.get_field
        sql = "SELECT {} FROM {} WHERE {} = %s AND {} > %s".format(
            qn(field("session_data").column),
            qn(model._meta.db_table),
            qn(field("session_key").column),
            qn(field("expire_date").column),
        )
        _session_sql[(connection.alias, model._meta.db_table)] = sql
    with connection.cursor() as cursor:
        cursor.execute(sql, [key, connection.ops.adapt_datetimefield_value(timezone.now())])
        row = cursor.fetchone()
    if row is None:
        store._session_key = None
        return {}
    decoded: dict[str, Any] = store.decode(row[0])
    return decoded


def _cookies(scope: dict[str, Any]) -> dict[str, str]:
    for name, value in scope.get("headers", ()):
        if name == b"cookie":
            return parse_cookie(value.decode("latin1"))
    return {}


class ResourceAuthMiddleware:
    """The session cookie, HTTP Basic or a Bearer token, in one middleware (see the
    module docstring for what the scope holds). Basic or Bearer win when sent; wrong
    ones set ``auth.AUTH_FAILED`` (the resource closes with 3000)."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner

    @hands_over
    def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> Awaitable[Any]:
        """The inner application's coroutine, with the login in its scope. Without a
        cookie or an ``Authorization`` header it is returned at once; with one, a
        resource's coroutine is too (it does the login first), and any other
        application's is awaited by a coroutine that logs in first. An open socket of a
        resource keeps neither a frame of this middleware nor the scope copies it made
        along the way."""
        if scope.get("type") not in ("websocket", "http"):
            return self.inner(scope, receive, send)  # type: ignore[no-any-return]
        cookies = _cookies(scope)
        key = cookies.get(django_settings.SESSION_COOKIE_NAME)
        scope = dict(scope, cookies=cookies)
        sends_credentials = auth.sends_credentials(scope)
        if scope.get("user") is not None and not sends_credentials:
            # Set by an outer middleware or a test (ResourceCommunicator's user=): kept, as
            # Channels' AuthMiddleware keeps it.
            scope.setdefault("session", session_store(key))
        elif key or sends_credentials:
            route = _resource_route(self.inner, scope)
            if route is not None:
                # Routed as the router would, to a resource, which logs in as the first
                # step of its own coroutine (it pops PENDING_LOGIN): this middleware keeps
                # no frame for the socket's life, and a REST write can re-check a
                # remembered login in its own thread hop. Any other application is
                # called once the login is in its scope.
                application, routed = route
                routed[PENDING_LOGIN] = functools.partial(self._log_into, key)
                return application(routed, receive, send)  # type: ignore[no-any-return]
            return self._log_in(scope, key, receive, send)
        else:
            scope["session"] = session_store(None)
            scope["user"] = _anonymous()
        return self.inner(scope, receive, send)  # type: ignore[no-any-return]

    async def _log_in(self, scope: dict[str, Any], key: str | None, receive: Any, send: Any) -> Any:
        """Log in (``_log_into``), then run the inner application."""
        await self._log_into(key, scope)
        application = self.inner(scope, receive, send)
        del scope  # the application holds what it needs of it
        return await application

    async def _log_into(self, key: str | None, scope: dict[str, Any], defer_user_check: bool = False) -> None:
        """Set the login in ``scope``: from the Basic or Bearer header (which wins when
        sent), else from the session cookie ``key`` (no user in the scope yet). With
        ``defer_user_check``, a header login whose one step left is the re-check of the
        user row leaves that step in ``scope[auth.USER_CHECK]`` and sets no user: the
        caller does it in a thread hop of its own (a REST write), then ``set_login``."""
        login = await auth.header_claim(scope)
        if isinstance(login, auth.UserCheck) and not defer_user_check:
            login = await login.login()
        if isinstance(login, auth.UserCheck):
            scope["session"] = session_store(key)
            scope[auth.USER_CHECK] = login
        elif login is not None:
            scope["session"] = session_store(key)
            set_login(scope, *login)
        else:  # no Basic or Bearer header: the session cookie's
            store, user = await executors.handshake_reads.run(session_user, key)
            scope["session"] = store
            scope["user"] = _anonymous() if user is None else user


def set_login(scope: dict[str, Any], user: Any, credential: tuple[str, str] | None) -> None:
    """Put a header login in ``scope``: ``user`` and its ``credential`` (method, password
    fingerprint), or, for None, an anonymous user and ``auth.AUTH_FAILED``."""
    if user is None:
        scope["user"] = _anonymous()
        scope[auth.AUTH_FAILED] = True
    else:
        scope["user"] = user
        scope[auth.AUTH_CREDENTIAL] = credential


#: Scope key of a login still to do, ``await scope.pop(PENDING_LOGIN)(scope)``: what a
#: ``Resource`` does first when ``ResourceAuthMiddleware`` handed it one (never to a
#: subclass with a ``__call__`` of its own: that one is called after the login). Over
#: HTTP, REST does it (``rest.serve``), for a write with ``defer_user_check``.
PENDING_LOGIN = "harper_resources.pending_login"


def _resource_route(inner: Any, scope: dict[str, Any]) -> tuple[Any, dict[str, Any]] | None:
    """``(resource application, routed scope)`` if ``inner`` is a ``ResourceRouter`` or a
    ``URLRouter`` (their own ``__call__``, as ``ResourceHTTPRouter`` uses) that routes
    ``scope`` to a ``Resource`` whose coroutine starts with ``PENDING_LOGIN``
    (``routing.resource_route``); else None."""
    from channels.routing import URLRouter

    from .routing import ResourceRouter, resource_route  # routing imports auth, which imports this

    if type(inner).__call__ not in (ResourceRouter.__call__, URLRouter.__call__):
        return None
    return resource_route(inner, scope)


_PASS = frozenset({"RESUME", "NOP", "CACHE", "EXTENDED_ARG"})


@functools.lru_cache(maxsize=1024)
def _returns_constant(code: types.CodeType) -> bool:
    ops = [op for op in dis.get_instructions(code) if op.opname not in _PASS]
    if len(ops) == 1:
        return ops[0].opname == "RETURN_CONST"
    return len(ops) == 2 and ops[0].opname == "LOAD_CONST" and ops[1].opname == "RETURN_VALUE"


def answers_at_once(check: Any) -> bool:
    """Is ``check`` a plain ``def`` (or method) whose body only returns a constant, like
    ``return True``? Such a check cannot touch the database or block."""
    function = getattr(check, "__func__", check)
    return isinstance(function, types.FunctionType) and _returns_constant(function.__code__)


async def allow(check: Any, user: Any) -> bool:
    """``check(user)`` (an ``allow_read``): ``async def`` awaited on the event loop; a
    ``def`` that only returns a constant called directly (no thread hop); any other
    ``def`` in a thread through ``database_sync_to_async``."""
    if inspect.iscoroutinefunction(check):
        return bool(await check(user))
    if answers_at_once(check):
        return bool(check(user))
    return bool(await database_sync_to_async(check)(user))


def _anonymous() -> Any:
    # Imported here, not at the top: an asgi.py may import this module before Django is set up.
    from django.contrib.auth.models import AnonymousUser

    return AnonymousUser()
