"""The objects a resource's ``connect()`` works with.

- ``Stream``: what ``super().connect()`` returns; the connection's outgoing messages.
- ``IncomingMessages``: the client's messages, as ``connect(incoming_messages)`` gets them.
- ``Frame``: one pre-encoded record frame, shared by every local subscriber.
"""

from __future__ import annotations

import asyncio
import collections
import inspect
import json
import logging
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any

from . import metrics

logger = logging.getLogger("harper_resources")

Callback = Callable[..., Any]


class Frame:
    """A record frame (``put``/``delete``/``message``) already encoded as JSON text.

    It is written to the socket as it is; reading it as a mapping (``frame["type"]``,
    ``frame.data``) decodes it once, for resources that want to look inside.
    """

    __slots__ = ("_data", "text")

    def __init__(self, text: str) -> None:
        self.text = text
        self._data: Any = None

    @property
    def data(self) -> dict[str, Any]:
        if self._data is None:
            self._data = json.loads(self.text)
        data: dict[str, Any] = self._data
        return data

    def __getitem__(self, name: str) -> Any:
        return self.data[name]

    def get(self, name: str, default: Any = None) -> Any:
        return self.data.get(name, default)

    def __repr__(self) -> str:
        return f"Frame({self.text!r})"


class _Emitter:
    """``on(event, fn)`` for a fixed set of event names; fn may be def or async def."""

    _events: tuple[str, ...] = ()

    def __init__(self) -> None:
        self._callbacks: dict[str, list[Callback]] = {name: [] for name in self._events}
        self._tasks: set[asyncio.Task[Any]] = set()

    def on(self, event: str, fn: Callback) -> Callback:
        """Call ``fn`` on ``event``. Returns ``fn``, so it also works as a decorator."""
        if event not in self._callbacks:
            raise ValueError(f"unknown event {event!r}; expected one of {', '.join(self._events)}")
        self._callbacks[event].append(fn)
        return fn

    def _emit(self, event: str, *args: Any) -> None:
        for fn in self._callbacks[event]:
            try:
                result = fn(*args)
            except Exception:
                logger.exception("harper_resources: %r callback failed", event)
                continue
            if inspect.isawaitable(result):
                self.create_task(result)

    def create_task(self, coro: Coroutine[Any, Any, Any] | Awaitable[Any]) -> asyncio.Task[Any]:
        """Run ``coro`` for this connection; it is cancelled when the connection ends."""
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._task_done)
        return task

    def _task_done(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            logger.error("harper_resources: a connection task failed", exc_info=task.exception())

    def _cancel_tasks(self) -> None:
        for task in list(self._tasks):
            task.cancel()


class Stream(_Emitter):
    """A connection's outgoing messages: ``send()``, ``on("close", fn)``, ``close()`` and
    async iteration (the connection iterates it to write frames).

    ``send`` never blocks. Messages wait in a queue of at most ``maxsize``; when a client
    reads too slowly for that, the stream closes with 1013 and the drop is logged and
    counted (``metrics`` name ``slow_client_closed``). After ``close()`` sends are ignored.
    """

    _events = ("close",)

    def __init__(self, *, maxsize: int = 1000) -> None:
        super().__init__()
        self._queue: collections.deque[Any] = collections.deque()
        self._maxsize = maxsize
        self._waiter: asyncio.Future[None] | None = None
        self._closing = False
        self._closed = False
        self.close_code = 1000
        self.close_reason = ""
        self._cleanups: list[Callable[[], None]] = []
        self._held = False
        # Resolves True once the stream's subscription is in place (False if it failed);
        # None for a stream that subscribes to nothing.
        self._subscribed: asyncio.Future[bool] | None = None
        self._aborted = False
        self._abort_waiter: asyncio.Future[None] | None = None

    @property
    def closed(self) -> bool:
        """True once ``close()`` ran (or the client left)."""
        return self._closing

    def send(self, message: Any) -> None:
        """Queue ``message`` for this connection: a ``Frame`` goes out as it is, any other
        value as its JSON. Ignored once the stream is closed."""
        if self._closing:
            return
        if len(self._queue) >= self._maxsize:
            metrics.throttled_warning(
                "slow_client_closed", "harper_resources: a client read too slowly; its stream was closed (1013)"
            )
            self._queue.clear()
            self.close(1013, "Client too slow", abort=True)
            return
        self._queue.append(message)
        self._wake()

    def close(self, code: int = 1000, reason: str = "", *, abort: bool = False) -> None:
        """End the stream: the socket closes with ``code`` and ``reason`` once the frames
        already queued are written (at once, dropping them, with ``abort``), close
        callbacks run once, and the connection's tasks are cancelled."""
        if self._closing:
            return
        self._closing = True
        self.close_code = code
        self.close_reason = reason
        if abort:
            self._aborted = True
            if self._abort_waiter is not None and not self._abort_waiter.done():
                self._abort_waiter.set_result(None)
        self._wake()

    def _abort_signal(self) -> asyncio.Future[None]:
        """Resolves when the stream is closed with ``abort`` (the writer must stop now)."""
        if self._abort_waiter is None:
            self._abort_waiter = asyncio.get_running_loop().create_future()
            if self._aborted:
                self._abort_waiter.set_result(None)
        return self._abort_waiter

    def _mark_subscribed(self, ok: bool) -> None:
        if self._subscribed is not None and not self._subscribed.done():
            self._subscribed.set_result(ok)

    def _hold(self) -> None:
        """Queue but do not yield messages until ``_release`` (while the first frames load)."""
        self._held = True

    def _release(self, first: list[Any]) -> None:
        """Put ``first`` ahead of everything queued so far and start yielding again.

        The queue may then hold ``len(first)`` more than ``maxsize``: the initial record
        dump is bounded by its own setting.
        """
        self._queue.extendleft(reversed(first))
        self._maxsize += len(first)
        self._held = False
        self._wake()

    def _wake(self) -> None:
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def _add_cleanup(self, fn: Callable[[], None]) -> None:
        """Run ``fn`` when the connection ends (used for hub subscriptions); at once if
        it has ended already."""
        if self._closed:
            fn()
        else:
            self._cleanups.append(fn)

    def _finish(self) -> None:
        """Called by the connection when it ends: close callbacks, tasks, subscriptions."""
        self.close(self.close_code, self.close_reason)
        if self._closed:
            return
        self._closed = True
        self._queue.clear()
        for cleanup in self._cleanups:
            try:
                cleanup()
            except Exception:
                logger.exception("harper_resources: stream clean-up failed")
        self._cleanups.clear()
        self._mark_subscribed(False)
        self._cancel_tasks()
        # After the cancel: an async close callback runs as a task of its own, to the end.
        self._emit("close")

    def __aiter__(self) -> Stream:
        return self

    async def __anext__(self) -> Any:
        while self._held or not self._queue:
            if self._closing and (self._held or not self._queue):
                raise StopAsyncIteration
            self._waiter = asyncio.get_running_loop().create_future()
            try:
                await self._waiter
            finally:
                self._waiter = None
        return self._queue.popleft()


class IncomingMessages(_Emitter):
    """The client's messages: ``on("data", fn)`` and async iteration, usable together.

    Every message goes to the ``data`` callbacks and is queued for async iteration,
    which may start at any time (messages sent before it are not lost). The queue holds
    at most ``maxsize`` messages and ``max_bytes`` of client frames. Until something
    iterates, the oldest messages make room for new ones (a resource that never
    iterates never holds more); once something iterates, a full queue means the client
    sends faster than the resource reads, and the connection closes with 1008.
    Iteration ends when the client leaves.
    """

    _events = ("data",)

    def __init__(self, *, maxsize: int = 1000, max_bytes: int = 8 * 1024 * 1024) -> None:
        super().__init__()
        self._queue: collections.deque[tuple[Any, int]] = collections.deque()
        self._maxsize = maxsize
        self._max_bytes = max_bytes
        self._bytes = 0
        self._iterating = False
        self._ended = False
        self._waiter: asyncio.Future[None] | None = None

    def _push(self, message: Any, size: int) -> bool:
        """Deliver one client message of ``size`` bytes. False if the connection must
        close because too much waits unread."""
        self._emit("data", message)
        if self._ended:
            return True
        while self._queue and (len(self._queue) >= self._maxsize or self._bytes + size > self._max_bytes):
            if self._iterating:
                metrics.throttled_warning(
                    "incoming_overflow_closed",
                    "harper_resources: a client sent faster than its resource read; closed (1008)",
                )
                return False
            self._bytes -= self._queue.popleft()[1]
        self._queue.append((message, size))
        self._bytes += size
        self._wake()
        return True

    def _end(self) -> None:
        self._ended = True
        self._wake()
        self._cancel_tasks()

    def _wake(self) -> None:
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def __aiter__(self) -> IncomingMessages:
        self._iterating = True
        return self

    async def __anext__(self) -> Any:
        self._iterating = True
        while not self._queue:
            if self._ended:
                raise StopAsyncIteration
            self._waiter = asyncio.get_running_loop().create_future()
            try:
                await self._waiter
            finally:
                self._waiter = None
        message, size = self._queue.popleft()
        self._bytes -= size
        return message
