"""Open sockets lose access when their user does.

Each server process checks its authenticated connections again every
``HARPER_RESOURCES_REAUTH_INTERVAL`` seconds (a task per event loop, started with the
first such connection and stopped with the last): the user row must still exist and be
active; a Basic or Bearer login must still have the password fingerprint it logged in
with (a password change revokes it); a session login's session must still exist and
hold that user and password (logging out, deleting sessions or changing the password
ends it); and ``allow_read`` must still allow the fresh user. A connection that fails
is closed: 3000 if it is no longer logged in, 3003 if it is no longer allowed. The
database work runs in a thread of its own, never on the one ``database_sync_to_async``
shares; a check that raises is logged (throttled) and leaves the connection open.
"""

from __future__ import annotations

import asyncio
import inspect
import threading
from typing import TYPE_CHECKING, Any

from django.contrib.auth import HASH_SESSION_KEY, SESSION_KEY, get_user_model
from django.db import close_old_connections
from django.utils.crypto import constant_time_compare

from . import executors, metrics
from .auth import AUTH_CREDENTIAL
from .conf import settings
from .credentials import fingerprint
from .handshake import load_session, session_hash_holds, session_store

if TYPE_CHECKING:
    from .consumers import Resource

NOT_LOGGED_IN = (3000, "Must login")
FORBIDDEN = (3003, "Forbidden")

_watchers: dict[asyncio.AbstractEventLoop, Watcher] = {}
_lock = threading.Lock()


def watch(resource: Resource) -> None:
    """Check ``resource``'s user again every interval until ``unwatch``."""
    if not settings.REAUTH_INTERVAL:
        return
    loop = asyncio.get_running_loop()
    with _lock:
        watcher = _watchers.get(loop)
        if watcher is None:
            watcher = _watchers[loop] = Watcher(loop)
    watcher.add(resource)


def unwatch(resource: Resource) -> None:
    """Stop checking ``resource`` (safe to call for one never watched)."""
    with _lock:
        watcher = _watchers.get(asyncio.get_running_loop())
    if watcher is not None:
        watcher.discard(resource)


_executor = executors.ProcessPool("harper-reauth", lambda: 1)


class Watcher:
    """The authenticated connections of one event loop, and the task that checks them."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.connections: set[Resource] = set()
        self.task: asyncio.Task[None] | None = None

    def add(self, resource: Resource) -> None:
        self.connections.add(resource)
        if self.task is None:
            self.task = self.loop.create_task(self._run())

    def discard(self, resource: Resource) -> None:
        self.connections.discard(resource)
        if not self.connections and self.task is not None:
            self.task.cancel()
            self.task = None
            with _lock:
                if _watchers.get(self.loop) is self:
                    del _watchers[self.loop]

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(float(settings.REAUTH_INTERVAL))
            for resource in list(self.connections):
                if resource not in self.connections:
                    continue
                try:
                    verdict = await check(resource)
                except Exception:
                    metrics.throttled_warning(
                        "reauth_failed", "harper_resources: checking an open connection's user failed", exc_info=True
                    )
                    continue
                if verdict is not None:
                    self.connections.discard(resource)
                    resource._revoke(*verdict)


async def check(resource: Resource) -> tuple[int, str] | None:
    """None if ``resource``'s user may still read it; else the close code and reason."""
    loop = asyncio.get_running_loop()
    allow_read: Any = resource.allow_read
    run_sync = not inspect.iscoroutinefunction(allow_read)
    verdict, user = await loop.run_in_executor(_executor(), _check_here, resource, run_sync)
    if verdict is None and not run_sync and not await allow_read(user):
        return FORBIDDEN
    return verdict


def _check_here(resource: Resource, run_allow_read: bool) -> tuple[tuple[int, str] | None, Any]:
    close_old_connections()
    try:
        user = get_user_model()._default_manager.filter(pk=resource.user.pk).first()
        if user is None or not user.is_active or not _credential_holds(resource.scope, user):
            return NOT_LOGGED_IN, None
        if run_allow_read and not resource.allow_read(user):
            return FORBIDDEN, user
        return None, user
    finally:
        close_old_connections()


def _credential_holds(scope: dict[str, Any], user: Any) -> bool:
    """Does the login this connection was made with still stand for ``user``?"""
    credential = scope.get(AUTH_CREDENTIAL)
    if credential is not None:
        return constant_time_compare(fingerprint(user), credential[1])
    session = scope.get("session")
    key = getattr(session, "session_key", None)
    if key is None:
        return True  # logged in some other way (a middleware of the project's): nothing to check here
    data = load_session(session_store(key))
    if str(data.get(SESSION_KEY)) != str(user._meta.pk.value_to_string(user)):
        return False
    return session_hash_holds(user, data.get(HASH_SESSION_KEY))
