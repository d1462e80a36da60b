"""One settings facade: each setting is read from django.conf.settings at its first use
and kept (the hot paths read several per frame), until Django's ``setting_changed``
signal says it changed, so ``override_settings`` (and pytest-django's ``settings``
fixture) work in tests without extra code. Names and defaults are documented in the
README ("Settings").
"""

from __future__ import annotations

from typing import Any

from django.conf import settings as django_settings
from django.core.signals import setting_changed

DEFAULTS: dict[str, Any] = {
    # Alias in CHANNEL_LAYERS that carries changes between processes.
    "CHANNEL_LAYER": "default",
    # At most this many records are sent when a client opens a collection path.
    "COLLECTION_LIMIT": 1000,
    # A client frame larger than this (bytes) closes the socket with 1009.
    "MAX_MESSAGE_BYTES": 1024 * 1024,
    # Frames waiting to be written to one client; past it the client is closed with 1013.
    "SEND_QUEUE_SIZE": 1000,
    # While a connection's writer is idle, write a frame at once from the hub, running
    # the ASGI send as that writer task (its context, current_task()) instead of waking
    # it (harper_resources/eager.py). False: every frame wakes the writer.
    "EAGER_SEND": True,
    # Bytes of frames waiting to be written to one client; past it, closed with 1013 too.
    "SEND_QUEUE_BYTES": 8 * 1024 * 1024,
    # Client messages a resource has not read yet; past it the client is closed with 1008.
    "RECEIVE_QUEUE_SIZE": 1000,
    # Messages a second one client may send, after a burst of MESSAGE_BURST; a client that
    # sends faster is closed with 1008.
    "MESSAGE_RATE": 50.0,
    "MESSAGE_BURST": 200,
    # Broadcasts waiting to be handed to the channel layer in one process; past it they
    # are dropped, counted and logged.
    "BROADCAST_QUEUE_SIZE": 10000,
    # Published messages waiting to be handed to that layer, in a queue of their own that
    # waits while any change does; past it they are dropped, counted and logged.
    "PUBLISH_QUEUE_SIZE": 1000,
    # How long (seconds) a process that exits waits for its queued broadcasts to be sent.
    "EXIT_FLUSH_TIMEOUT": 5.0,
    # The change log keeps changes this many seconds (resumes with ?since= older than
    # that get a reset and the full dump) ...
    "LOG_RETENTION": 24 * 3600,
    # ... and at most this many changes.
    "LOG_MAX_CHANGES": 100_000,
    # Every this many seconds a server process reads the change log for changes whose
    # broadcast it missed (a channel layer that was down, a writer killed after its
    # commit). 0 turns catch-up off.
    "REPLAY_INTERVAL": 1.0,
    # Seconds a verified HTTP Basic login is remembered (re-checked against the user row,
    # without hashing); 0 hashes the password on every handshake.
    "AUTH_CACHE_SECONDS": 60.0,
    # Threads that check passwords (hash) per process; more checks wait their turn.
    "PASSWORD_HASH_THREADS": 2,
    # Threads per process that run REST writes on a database that locks rows
    # (PostgreSQL, MySQL, Oracle), so a write waiting on its round trips does not hold
    # up the next; 1 runs them on the thread database_sync_to_async shares. SQLite's
    # writes always run there (its writers wait for each other anyway).
    "WRITE_THREADS": 4,
    # Every this many seconds a server process checks its logged-in connections again and
    # closes those whose user lost access (3000 or 3003). 0 turns it off.
    "REAUTH_INTERVAL": 5.0,
    # An event stream (SSE) writes a comment line after this many seconds without output,
    # so proxies keep it open and a client that left is noticed.
    "SSE_KEEPALIVE": 15.0,
}

PREFIX = "HARPER_RESOURCES_"


class Settings:
    """Attribute access to ``HARPER_RESOURCES_<NAME>`` with the defaults above."""

    def __getattr__(self, name: str) -> Any:
        # Called only for a setting not read yet: the value is kept in the instance.
        if name not in DEFAULTS:
            raise AttributeError(f"unknown harper_resources setting {name!r}")
        value = getattr(django_settings, PREFIX + name, DEFAULTS[name])
        self.__dict__[name] = value
        return value

    def forget(self, name: str) -> None:
        """Read setting ``name`` (without the prefix) again at its next use."""
        self.__dict__.pop(name, None)


settings = Settings()


def _setting_changed(*, setting: str, **kwargs: Any) -> None:
    if setting.startswith(PREFIX):
        settings.forget(setting[len(PREFIX) :])


setting_changed.connect(_setting_changed)
