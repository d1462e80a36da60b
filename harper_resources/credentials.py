"""Checking passwords without stalling other connections, and remembering the result.

- ``fingerprint(user)``: a short keyed digest of the user's stored password hash. It
  changes whenever the password does, so whatever holds it (a cached Basic login, a
  Bearer token, an open socket) is revoked by a password change.
- ``authenticate(username, password)``: Django's ``authenticate()`` in a small thread
  pool of its own (``HARPER_RESOURCES_PASSWORD_HASH_THREADS`` threads): at most that
  many passwords are hashed at once, and further checks wait their turn in that pool.
  Neither the handshake thread (``executors.handshake_reads``: session logins)
  nor the one ``database_sync_to_async`` shares (``allow_read``) ever runs a hasher, so
  wrong passwords never delay other connections.
- ``check_basic(username, password)``: ``authenticate`` behind a cache of verified
  credentials (``HARPER_RESOURCES_AUTH_CACHE_SECONDS``). The key is a keyed digest of
  username and password; the value the user id and the password fingerprint, re-checked
  against the user row (one query, no hashing) on every hit. Failures are never cached:
  a wrong password always costs a full check and never matches a cached key.
"""

from __future__ import annotations

import asyncio
import collections
import threading
import time
from typing import Any

from channels.db import database_sync_to_async
from django.contrib import auth
from django.contrib.auth import get_user_model
from django.db import close_old_connections
from django.utils.crypto import constant_time_compare, salted_hmac

from . import executors, tables
from .conf import settings

#: Most verified credentials one process remembers (the oldest go first).
CACHE_MAX_ENTRIES = 10_000

_cache: collections.OrderedDict[str, tuple[float, Any, str]] = collections.OrderedDict()
_cache_lock = threading.Lock()


def fingerprint(user: Any) -> str:
    """A keyed digest of ``user``'s stored password hash (empty hash: unusable)."""
    return salted_hmac("harper_resources.password", user.password or "", algorithm="sha256").hexdigest()[:32]


def _cache_key(username: str, password: str) -> str:
    return salted_hmac("harper_resources.basic", f"{username}\0{password}", algorithm="sha256").hexdigest()


_executor = executors.ProcessPool("harper-password", lambda: int(settings.PASSWORD_HASH_THREADS))


def _authenticate_here(username: str, password: str) -> Any:
    close_old_connections()
    try:
        return auth.authenticate(None, username=username, password=password)
    finally:
        close_old_connections()


async def authenticate(username: str, password: str) -> Any:
    """The active user these credentials log in, or None; hashed in the password pool."""
    loop = asyncio.get_running_loop()
    user = await loop.run_in_executor(_executor(), _authenticate_here, username, password)
    if user is None or not user.is_active:
        return None
    return user


def active_user(pk: Any, expected_fingerprint: str) -> Any:
    """The active user ``pk`` if its password fingerprint is still ``expected_fingerprint``;
    else None. One query, no hashing (sync: call through ``database_sync_to_async``)."""
    user: Any = tables.read_default(get_user_model(), pk)
    if user is None or not user.is_active or not constant_time_compare(fingerprint(user), expected_fingerprint):
        return None
    return user


#: Built once: making a ``database_sync_to_async`` wrapper costs more than the call.
_active_user_in_thread = database_sync_to_async(active_user)


async def check_basic(username: str, password: str) -> Any:
    """The active user HTTP Basic ``username``/``password`` logs in, or None."""
    seconds = settings.AUTH_CACHE_SECONDS
    key = _cache_key(username, password)
    if seconds:
        with _cache_lock:
            entry = _cache.get(key)
        if entry is not None and entry[0] > time.monotonic():
            user = await _active_user_in_thread(entry[1], entry[2])
            if user is not None:
                return user
        if entry is not None:
            forget(key)
    user = await authenticate(username, password)
    if user is not None and seconds:
        with _cache_lock:
            _cache[key] = (time.monotonic() + seconds, user.pk, fingerprint(user))
            _cache.move_to_end(key)
            while len(_cache) > CACHE_MAX_ENTRIES:
                _cache.popitem(last=False)
    return user


def forget(key: str | None = None) -> None:
    """Drop one cached credential (by key), or all of them."""
    with _cache_lock:
        if key is None:
            _cache.clear()
        else:
            _cache.pop(key, None)
