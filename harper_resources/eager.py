"""Writing a frame from the hub as the connection's writer task would, without waking it.

A connection's frames are written by its writer task (``Resource._write_then_close``), so every ASGI
``send`` runs in that task and in its context: ``asyncio.timeout``, task groups, anyio
cancel scopes and contextvars inside ``send`` (server or middleware code) work. Waking
that task once per frame is, at a thousand subscribers, most of the CPU a delivery
costs. So while the writer is idle (parked, nothing queued), ``Stream.send`` hands the
frame to a ``DirectSend`` instead, which runs the ``send`` coroutine at once *as* the
writer task: in the writer's own ``Context``, with the writer as the loop's current task
(``asyncio.current_task()`` is the writer inside ``send``). A ``send`` that completes
without suspending (uvicorn's and daphne's do, until the socket's buffer is full) costs
no wake-up at all. One that suspends is handed to the writer task, which resumes it
where it stopped (``Resumption``), exactly as if it had started it.

Only from outside any task (the hub's dispatch runs as a loop callback); a send made
inside some task, and any send while frames wait or the writer is busy, goes through
the writer's queue as before, so the order of frames never changes.
"""

from __future__ import annotations

import asyncio
import contextvars
import inspect
import sys
from collections.abc import Awaitable, Generator
from typing import TYPE_CHECKING, Any

from .streams import Frame, Send, asgi_message

if TYPE_CHECKING:
    from .codecs import Codec
    from .streams import Stream

#: Whether a task can be given its Context (3.11+) and entered from outside (CPython).
SUPPORTED = sys.version_info >= (3, 11) and hasattr(asyncio.tasks, "_enter_task")
if SUPPORTED:
    _current_tasks: dict[asyncio.AbstractEventLoop, asyncio.Task[Any]] = asyncio.tasks._current_tasks  # type: ignore[attr-defined]
    _enter_task, _leave_task = asyncio.tasks._enter_task, asyncio.tasks._leave_task


class Resumption:
    """The rest of a ``send`` coroutine that suspended while it ran eagerly: awaiting it
    (in the writer task) waits for what the coroutine waited for, then runs it on to its
    end (or, made by ``thrown``, with an exception raised where it waits)."""

    __slots__ = ("_coro", "_pending", "_waiting_for")

    def __init__(self, coro: Any, waiting_for: Any) -> None:
        self._coro = coro
        self._waiting_for = waiting_for
        self._pending: BaseException | None = None

    def __await__(self) -> Generator[Any, Any, Any]:
        coro = self._coro
        try:
            if self._pending is not None:
                value = coro.throw(self._pending)
            else:
                value = self._waiting_for
            while True:
                try:
                    sent = yield value
                except GeneratorExit:
                    coro.close()
                    raise
                except BaseException as exc:
                    value = coro.throw(exc)
                else:
                    value = coro.send(sent)
        except StopIteration as stop:
            return stop.value


def thrown(rest: Awaitable[Any], error: BaseException) -> Awaitable[Any]:
    """``rest`` (a ``Stream._resume``) getting ``error`` where it waits: the writer was
    cancelled before it got to it, and the send gets the cancellation, as it would have
    had the writer started it."""
    if isinstance(rest, Resumption):
        rest._pending = error
        return rest
    return _raise(error)


async def _raise(error: BaseException) -> None:
    raise error


class DirectSend:
    """``Stream._direct`` for one connection: write ``item`` now as ``task`` (the writer)
    would. Returns False, taking nothing, where it cannot (inside another task)."""

    __slots__ = ("_async", "_codec", "_context", "_loop", "_send", "_stream", "_task", "_text")

    def __init__(
        self,
        stream: Stream,
        send: Send,
        codec: Codec | None,
        task: asyncio.Task[Any],
        context: contextvars.Context,
    ) -> None:
        self._stream = stream
        self._send = send
        self._async = inspect.iscoroutinefunction(send)
        self._codec = codec
        self._text = codec is None or not codec.binary  # a Frame goes out as its JSON text
        self._task = task
        self._context = context
        self._loop = task.get_loop()

    def __call__(self, item: Any) -> bool:
        loop = self._loop
        if _current_tasks.get(loop) is not None:  # asyncio.current_task(loop), without the call
            return False
        if self._text and type(item) is Frame:
            message: dict[str, Any] = {"type": "websocket.send", "text": item.text}
        else:
            encoded = asgi_message(item, self._codec)
            if encoded is None:
                return True  # not encodable: logged, and dropped as the writer would
            message = encoded
        stream = self._stream
        task = self._task
        _enter_task(loop, task)
        try:
            # An async def send only makes its coroutine here (it runs below, in the
            # writer's context); any other callable runs in that context at once.
            coro = self._send(message) if self._async else self._context.run(self._send, message)
            step = getattr(coro, "send", None)
            if step is None:  # an awaitable that is no coroutine: the writer awaits it
                stream._suspended(coro)
                return True
            try:
                waiting_for = self._context.run(step, None)
            except StopIteration:
                return True
            except Exception as exc:
                stream._direct_failed(exc)
                return True
            stream._suspended(Resumption(coro, waiting_for))
            return True
        finally:
            _leave_task(loop, task)
