"""Thread pools of this app's own (password hashing, re-authorisation, change-log reads),
kept apart from the one thread ``database_sync_to_async`` shares with every handshake."""

from __future__ import annotations

import concurrent.futures
import os
import threading
from collections.abc import Callable


class ProcessPool:
    """A ``ThreadPoolExecutor`` made at first use in each process: a ``fork()`` child
    inherits the parent's pool but not its threads, so it makes its own."""

    def __init__(self, name: str, workers: Callable[[], int]) -> None:
        self.name = name
        self.workers = workers  # read when the pool is made (a setting, say)
        self._pool: concurrent.futures.ThreadPoolExecutor | None = None
        self._pid = 0
        self._lock = threading.Lock()

    def __call__(self) -> concurrent.futures.ThreadPoolExecutor:
        with self._lock:
            if self._pool is None or self._pid != os.getpid():
                self._pool = concurrent.futures.ThreadPoolExecutor(
                    max_workers=self.workers(), thread_name_prefix=self.name
                )
                self._pid = os.getpid()
            return self._pool
