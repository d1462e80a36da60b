"""Checking passwords without stalling other connections, and remembering the result.

- ``fingerprint(user)``: a short keyed digest of the user's stored password hash. It
  changes whenever the password does, so whatever holds it (a cached Basic login, a
  Bearer token, an open socket) is revoked by a password change.
- ``authenticate(username, password)``: Django's ``authenticate()`` in a small thread
  pool of its own (``HARPER_RESOURCES_PASSWORD_HASH_THREADS`` threads): at most that
  many passwords are hashed at once, and further checks wait their turn in that pool.
  Neither the handshake thread (``executors.handshake_reads``: session logins, re-checks)
  nor the one ``database_sync_to_async`` shares (``allow_read``) ever runs a hasher, so
  wrong passwords never delay other connections.
- ``check_basic(username, password)``: ``authenticate`` behind a cache of verified
  credentials (``HARPER_RESOURCES_AUTH_CACHE_SECONDS``). The key is a keyed digest of
  username and password; the value the user id and the password fingerprint, re-checked
  against the user row (one query, no hashing) on every hit. Failures are never cached:
  a wrong password always costs a full check and never matches a cached key.
- ``active_user_checked(pk, fingerprint)``: that re-check (also a Bearer token's), on the
  handshake thread (``executors.handshake_reads``): it reads only the user row and runs
  no user code, so it needs none of ``database_sync_to_async``'s context handling.

The keyed digests are Django's ``salted_hmac(salt, value, algorithm="sha256")``, with the
key derived once per ``SECRET_KEY`` instead of on every call (``keyed_digest``).
"""

from __future__ import annotations

import asyncio
import collections
import functools
import hashlib
import hmac
import threading
import time
from typing import Any

from django.conf import settings as django_settings
from django.contrib import auth
from django.contrib.auth import get_user_model
from django.db import close_old_connections
from django.utils.crypto import constant_time_compare
from django.utils.encoding import force_bytes

from . import executors, tables
from .conf import settings

#: Most verified credentials one process remembers (the oldest go first).
CACHE_MAX_ENTRIES = 10_000

_cache: collections.OrderedDict[str, tuple[float, Any, str]] = collections.OrderedDict()
_cache_lock = threading.Lock()


@functools.lru_cache(maxsize=16)
def _hmac_key(salt: str, secret: Any) -> bytes:
    return hashlib.sha256(force_bytes(salt) + force_bytes(secret)).digest()


def keyed_digest(salt: str, value: str) -> str:
    """``salted_hmac(salt, value, algorithm="sha256").hexdigest()`` (the project's
    ``SECRET_KEY``), the same digest with the HMAC key derived once per secret."""
    return hmac.digest(_hmac_key(salt, django_settings.SECRET_KEY), value.encode(), "sha256").hex()


def fingerprint(user: Any) -> str:
    """A keyed digest of ``user``'s stored password hash (empty hash: unusable)."""
    return keyed_digest("harper_resources.password", user.password or "")[:32]


def _cache_key(username: str, password: str) -> str:
    return keyed_digest("harper_resources.basic", f"{username}\0{password}")


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
    else None. One query, no hashing (sync: call it in a thread)."""
    user: Any = tables.read_default(get_user_model(), pk)
    if user is None or not user.is_active or not constant_time_compare(fingerprint(user), expected_fingerprint):
        return None
    return user


async def active_user_checked(pk: Any, expected_fingerprint: str) -> Any:
    """``active_user`` on the handshake thread (``executors.handshake_reads``)."""
    return await executors.handshake_reads.run(active_user, pk, expected_fingerprint)


def cached_login(username: str, password: str) -> tuple[Any, str] | None:
    """``(user pk, password fingerprint)`` these Basic credentials were verified for, if
    that is remembered and not expired; else None. No I/O: the user row is still to be
    re-checked (``active_user``)."""
    if not settings.AUTH_CACHE_SECONDS:
        return None
    with _cache_lock:
        entry = _cache.get(_cache_key(username, password))
    if entry is None or entry[0] <= time.monotonic():
        return None
    return entry[1], entry[2]


async def verify_basic(username: str, password: str) -> Any:
    """The active user ``username``/``password`` logs in, checked in full (hashed in the
    password pool, never from the cache), or None; a verified login is remembered."""
    key = _cache_key(username, password)
    forget(key)
    user = await authenticate(username, password)
    seconds = settings.AUTH_CACHE_SECONDS
    if user is not None and seconds:
        with _cache_lock:
            _cache[key] = (time.monotonic() + seconds, user.pk, fingerprint(user))
            _cache.move_to_end(key)
            while len(_cache) > CACHE_MAX_ENTRIES:
                _cache.popitem(last=False)
    return user


async def check_basic(username: str, password: str) -> Any:
    """The active user HTTP Basic ``username``/``password`` logs in, or None: a
    remembered login re-checked against the user row, else checked in full (also when
    the row no longer matches: the password may be right for a re-hashed one)."""
    cached = cached_login(username, password)
    if cached is not None:
        user = await active_user_checked(*cached)
        if user is not None:
            return user
    return await verify_basic(username, password)


def forget(key: str | None = None) -> None:
    """Drop one cached credential (by key), or all of them."""
    with _cache_lock:
        if key is None:
            _cache.clear()
        else:
            _cache.pop(key, None)
