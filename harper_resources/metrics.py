"""Counts of what went wrong on the delivery path, and logging that does not flood.

Counters are process-wide and only ever grow; read them with ``snapshot()``. A failure
that repeats (Redis down, a queue full) is logged on its first occurrence and then at
most once per ``interval`` seconds, with the number seen since the last line.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import Counter

logger = logging.getLogger("harper_resources")

_counts: Counter[str] = Counter()
_last_logged: dict[str, tuple[float, int]] = {}
_lock = threading.Lock()


def snapshot() -> dict[str, int]:
    """A copy of every counter."""
    with _lock:
        return dict(_counts)


def count(name: str) -> None:
    """Count ``name`` (no log line): expected events worth watching, such as stale frames dropped."""
    with _lock:
        _counts[name] += 1


def throttled_warning(
    name: str, message: str, *args: object, interval: float = 10.0, exc_info: bool | BaseException = False
) -> None:
    """Count ``name`` and log ``message`` unless the same ``name`` was logged within ``interval``."""
    _throttled(logging.WARNING, name, message, args, interval, exc_info)


def throttled_error(
    name: str, message: str, *args: object, interval: float = 10.0, exc_info: bool | BaseException = False
) -> None:
    """``throttled_warning`` at ERROR, for a resource's own code failing (a callback, a
    task, a listener), which may fail once per frame: each line has one traceback."""
    _throttled(logging.ERROR, name, message, args, interval, exc_info)


def _throttled(
    level: int, name: str, message: str, args: tuple[object, ...], interval: float, exc_info: bool | BaseException
) -> None:
    now = time.monotonic()
    with _lock:
        _counts[name] += 1
        total = _counts[name]
        last = _last_logged.get(name)
        if last is not None and now - last[0] < interval:
            return
        since = total - (last[1] if last else 0)
        _last_logged[name] = (now, total)
    logger.log(level, message + " (%d time(s) since last report, %d in all)", *args, since, total, exc_info=exc_info)
