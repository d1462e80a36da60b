"""Threads of this app's own, kept apart from the one thread ``database_sync_to_async``
shares with user code: pools for password hashing and re-authorisation
(``ProcessPool``), and one thread for the database reads of every handshake
(``DatabaseThread``)."""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextvars
import os
import queue
import threading
from collections.abc import Callable
from typing import Any, TypeVar

T = TypeVar("T")


class ProcessPool:
    """A ``ThreadPoolExecutor`` made at first use in each process: a ``fork()`` child
    inherits the parent's pool but not its threads, so it makes its own. ``workers``
    (a setting, say) is read at every use: when it changes, the next use gets a new
    pool of that size, and the old one ends once its calls have (``override_settings``)."""

    def __init__(self, name: str, workers: Callable[[], int]) -> None:
        self.name = name
        self.workers = workers
        self._pool: concurrent.futures.ThreadPoolExecutor | None = None
        self._pid = 0
        self._size = 0
        self._lock = threading.Lock()

    def __call__(self) -> concurrent.futures.ThreadPoolExecutor:
        size = self.workers()
        with self._lock:
            if self._pool is None or self._pid != os.getpid() or self._size != size:
                if self._pool is not None and self._pid == os.getpid():
                    self._pool.shutdown(wait=False)
                self._pool = concurrent.futures.ThreadPoolExecutor(max_workers=size, thread_name_prefix=self.name)
                self._pid = os.getpid()
                self._size = size
            return self._pool


class DatabaseThread:
    """One worker thread of this app's own for the short database reads of every
    handshake (a session's login).

    ``await thread.run(fn, *args)`` calls ``fn(*args)`` there, in a copy of the caller's
    contextvars, between two ``close_old_connections()`` (as Channels'
    ``database_sync_to_async`` does), and returns its result or raises its exception.
    Cheaper on the event loop than ``database_sync_to_async``: one queue put and one
    wake-up, no executor future and no context sync-back. When the caller is cancelled,
    a call not started yet is dropped (as with ``database_sync_to_async``) and a running
    one ends first, its result or error dropped: the caller gets ``CancelledError``
    (``database_sync_to_async`` returns at once and leaves the call running). Made at
    first use in each process, like ``ProcessPool``."""

    def __init__(self, name: str) -> None:
        self.name = name
        self._queue: queue.SimpleQueue[Any] | None = None
        self._not_started: set[asyncio.Future[Any]] = set()
        self._pid = 0
        self._lock = threading.Lock()

    def _jobs(self) -> queue.SimpleQueue[Any]:
        jobs = self._queue
        if jobs is not None and self._pid == os.getpid():
            return jobs
        with self._lock:
            if self._queue is None or self._pid != os.getpid():
                self._queue = queue.SimpleQueue()
                self._pid = os.getpid()
                self._not_started = set()
                threading.Thread(
                    target=_work, args=(self._queue, self._not_started), name=self.name, daemon=True
                ).start()
            return self._queue

    async def run(self, fn: Callable[..., T], *args: Any) -> T:
        loop = asyncio.get_running_loop()
        future: asyncio.Future[T] = loop.create_future()
        jobs = self._jobs()  # first: a new process gets a new set too
        self._not_started.add(future)
        jobs.put((loop, future, contextvars.copy_context(), fn, args))
        try:
            return await asyncio.shield(future)
        except asyncio.CancelledError:
            # A call not started yet never starts (as with database_sync_to_async); one
            # running ends before the cancellation goes on, so nothing it holds outlives
            # the caller's task. Its result or error is dropped: the caller gets the
            # cancellation. (set.remove is atomic: the thread takes a call the same way.)
            try:
                self._not_started.remove(future)
            except KeyError:
                while not future.done():
                    try:
                        await asyncio.shield(future)
                    except BaseException:  # the cancellation below wins
                        pass
            raise


def _work(jobs: queue.SimpleQueue[Any], not_started: set[asyncio.Future[Any]]) -> None:
    from django.db import close_old_connections

    while True:
        loop, future, context, fn, args = jobs.get()
        try:
            not_started.remove(future)
        except KeyError:  # its caller was cancelled before it started
            del loop, future, context, fn, args
            continue
        error: BaseException | None = None
        result = None
        try:
            close_old_connections()
            result = context.run(fn, *args)
        except BaseException as exc:  # handed to the caller, like any executor
            error = exc
        finally:
            close_old_connections()
        try:
            loop.call_soon_threadsafe(_settle, future, result, error)
        except RuntimeError:  # the caller's loop is closed: nobody waits
            pass
        del loop, future, context, fn, args, result, error


def _settle(future: asyncio.Future[Any], result: Any, error: BaseException | None) -> None:
    if future.done():  # the caller was cancelled
        return
    if error is None:
        future.set_result(result)
    else:
        future.set_exception(error)


#: The thread of the session logins of handshakes (``handshake``).
handshake_reads = DatabaseThread("harper-handshake-db")
