"""The objects a resource's ``connect()`` works with.

- ``Stream``: what ``super().connect()`` returns; the connection's outgoing messages.
- ``IncomingMessages``: the client's messages, as ``connect(incoming_messages)`` gets them.
- ``Frame``: one pre-encoded record frame, shared by every local subscriber.
- ``RawMessage``: one ASGI ``websocket.send`` message written as it is (``Resource.send``).

Both stream classes allocate their queues, callback lists and task sets only when first
used: an idle connection is most connections, and it should cost little memory.
"""

from __future__ import annotations

import asyncio
import collections
import inspect
import json
import logging
import sys
from collections.abc import Awaitable, Callable, Coroutine
from typing import TYPE_CHECKING, Any

from . import metrics, protocol

if TYPE_CHECKING:
    from .codecs import Codec

logger = logging.getLogger("harper_resources")

Callback = Callable[..., Any]
Send = Callable[[dict[str, Any]], Awaitable[None]]

#: Seconds after its first frames during which a stream skips live copies of them.
FLOOR_SECONDS = 10.0


#: What a server's ``send`` raises for a client that is gone: uvicorn's
#: ``ClientDisconnected`` (an ``OSError``), and its ``RuntimeError`` for a send after it
#: closed the socket itself (the client's close frame or its keepalive timing out came
#: before the application saw the disconnect).
CLIENT_GONE = (OSError, RuntimeError)


def asgi_message(item: Any, codec: Codec | None = None) -> dict[str, Any] | None:
    """The ASGI ``websocket.send`` message for one outgoing item: a ``Frame`` as its
    text, bytes as a binary frame, anything else as JSON. With a binary ``codec``
    (MessagePack, CBOR) a ``Frame`` or any other value goes out as a binary frame in
    that format instead (each ``Frame`` encoded once per codec, however many connections
    send it); bytes still go out as they are. None (logged) if the item cannot be
    encoded."""
    if codec is not None and codec.binary:
        return _binary_message(item, codec)
    if isinstance(item, Frame):
        return {"type": "websocket.send", "text": item.text}
    if isinstance(item, (bytes, bytearray)):
        return {"type": "websocket.send", "bytes": bytes(item)}
    if isinstance(item, RawMessage):
        return item.message
    try:
        return {"type": "websocket.send", "text": protocol.encode(item)}
    except (TypeError, ValueError):
        logger.error("harper_resources: a resource sent a value JSON cannot encode: %r", item)
        return None


def _binary_message(item: Any, codec: Codec) -> dict[str, Any] | None:
    if isinstance(item, Frame):
        data = item.encoded(codec)
        return None if data is None else {"type": "websocket.send", "bytes": data}
    if isinstance(item, (bytes, bytearray)):
        return {"type": "websocket.send", "bytes": bytes(item)}
    try:
        return {"type": "websocket.send", "bytes": codec.dumps(item)}
    except Exception:
        # Once per message at worst: throttled, and counted as encode_failed.
        metrics.throttled_error(
            "encode_failed", "harper_resources: a resource sent a value %s cannot encode: %r", codec.name, item
        )
        return None


def _cost(item: Any) -> int:
    """What ``item`` counts against a send queue's byte bound: its size as written (a
    value JSON cannot encode counts 0: it is dropped when written)."""
    if isinstance(item, Frame):
        return len(item.text)
    if isinstance(item, (str, bytes, bytearray)):
        return len(item)
    if isinstance(item, RawMessage):
        return item.size
    try:
        return len(protocol.encode(item))
    except (TypeError, ValueError):
        return 0


class Frame:
    """A record frame (``put``/``delete``/``message``) already encoded as JSON text.

    It is written to the socket as it is; reading it as a mapping (``frame["type"]``,
    ``frame.data``) decodes it once, for resources that want to look inside.

    A ``put`` or ``delete`` also carries, undecoded, the record it is a state of
    (``record``: the record's group name) and its ``version``, so that hubs and streams
    can drop a state older than one already delivered without parsing JSON. A
    ``message`` frame is no state: ``record`` is None and it is never dropped as stale.
    A ``message`` published through a resource class carries that class's identity
    (``source``: ``Resource.message_source()``); one published with a model has None.

    Every local subscriber shares one ``Frame`` per change; a resource with its own
    ``fields``/``exclude``/``serialize`` keeps its projected copy on it (``_views``).
    """

    __slots__ = ("_data", "_encoded", "_views", "record", "source", "text", "version")

    def __init__(
        self, text: str, record: str | None = None, version: float = 0.0, *, source: str | None = None
    ) -> None:
        self.text = text
        self.record = record
        self.version = version
        self.source = source
        self._data: Any = None
        #: This frame as each projecting resource class sends it (``projection.py``).
        self._views: dict[object, Frame | None] | None = None
        #: This frame in each binary format it was sent in (``encoded``).
        self._encoded: dict[str, bytes | None] | None = None

    @property
    def data(self) -> dict[str, Any]:
        if self._data is None:
            self._data = json.loads(self.text)
        data: dict[str, Any] = self._data
        return data

    def __getitem__(self, name: str) -> Any:
        return self.data[name]

    def encoded(self, codec: Codec) -> bytes | None:
        """This frame in ``codec``'s format, encoded at the first call and kept for
        every later one. None if the format cannot carry it (an integer beyond 64 bits in
        MessagePack): the frame is not sent, and that is logged (throttled) and counted
        as ``encode_failed``."""
        return self.cached(codec.name, lambda frame: frame._dump(codec))

    def _dump(self, codec: Codec) -> bytes | None:
        try:
            return codec.dumps_parsed(self.data)
        except Exception:
            metrics.throttled_error(
                "encode_failed",
                "harper_resources: a frame %s cannot encode was not sent: %.200s",
                codec.name,
                self.text,
            )
            return None

    def cached(self, form: str, make: Callable[[Frame], bytes | None]) -> bytes | None:
        """This frame's bytes in ``form`` (a wire format, an event-stream event), made by
        ``make`` at the first call and kept on the frame for every later one: a frame is
        shared by every subscriber of its change, so each form is made once."""
        cache = self._encoded
        if cache is None:
            cache = self._encoded = {}
        elif form in cache:
            return cache[form]
        data = cache[form] = make(self)
        return data

    def get(self, name: str, default: Any = None) -> Any:
        return self.data.get(name, default)

    def __repr__(self) -> str:
        return f"Frame({self.text!r})"


class RawMessage:
    """An ASGI ``websocket.send`` message queued on a stream and written as it is: the
    text or bytes of ``Resource.send(text_data=..., bytes_data=...)``, in order with the
    stream's other messages, never filtered."""

    __slots__ = ("message", "size")

    def __init__(self, message: dict[str, Any]) -> None:
        self.message = message
        data = message.get("text")
        if data is None:
            data = message.get("bytes") or b""
        self.size = len(data)


class _Emitter:
    """``on(event, fn)`` for a fixed set of event names (fn may be def or async def), a
    waiter for one consumer, and the connection's tasks."""

    _events: tuple[str, ...] = ()

    def __init__(self) -> None:
        self._callbacks: dict[str, list[Callback]] | None = None
        self._tasks: set[asyncio.Task[Any]] | None = None
        self._waiter: asyncio.Future[None] | None = None

    def on(self, event: str, fn: Callback) -> Callback:
        """Call ``fn`` on ``event``. Returns ``fn``, so it also works as a decorator."""
        if event not in self._events:
            raise ValueError(f"unknown event {event!r}; expected one of {', '.join(self._events)}")
        if self._callbacks is None:
            self._callbacks = {}
        self._callbacks.setdefault(event, []).append(fn)
        return fn

    def _emit(self, event: str, *args: Any) -> None:
        if self._callbacks is None:
            return
        for fn in self._callbacks.get(event, ()):
            try:
                result = fn(*args)
            except Exception:
                # A callback may fail on every message: one traceback per interval, counted.
                metrics.throttled_error("callback_failed", "harper_resources: %r callback failed", event, exc_info=True)
                continue
            if inspect.isawaitable(result):
                self.create_task(result)

    def create_task(self, coro: Coroutine[Any, Any, Any] | Awaitable[Any]) -> asyncio.Task[Any]:
        """Run ``coro`` for this connection; it is cancelled when the connection ends."""
        task = asyncio.ensure_future(coro)
        if self._tasks is None:
            self._tasks = set()
        self._tasks.add(task)
        task.add_done_callback(self._task_done)
        return task

    def _task_done(self, task: asyncio.Task[Any]) -> None:
        if self._tasks is not None:
            self._tasks.discard(task)
            if not self._tasks:
                self._tasks = None  # an idle connection keeps no empty set
        error = None if task.cancelled() else task.exception()
        if error is not None:
            metrics.throttled_error("task_failed", "harper_resources: a connection task failed", exc_info=error)

    def _cancel_tasks(self) -> None:
        for task in list(self._tasks or ()):
            task.cancel()

    def _wake(self) -> None:
        waiter = self._waiter
        if waiter is not None:
            self._waiter = None
            if not waiter.done():
                waiter.set_result(None)

    def _wait(self) -> asyncio.Future[None]:
        """A future the consumer awaits; ``_wake`` resolves it."""
        waiter = self._waiter = asyncio.get_running_loop().create_future()
        return waiter


class Stream(_Emitter):
    """A connection's outgoing messages: ``send()``, ``on("close", fn)``, ``close()`` and
    async iteration (the connection iterates it to write frames).

    ``send`` never blocks. Messages wait in a queue of at most ``maxsize`` messages and
    ``max_bytes`` bytes (a ``Frame`` counts its text, other values their JSON; a single
    message bigger than that still goes out when nothing waits). When a client reads too
    slowly for that, the stream closes with 1013 at once, dropping what waits, and the
    close is logged and counted (``metrics`` name ``slow_client_closed``). After
    ``close()`` sends are ignored.
    """

    _events = ("close",)

    #: While the writer is idle: writes an item at once, as the writer would (``eager``);
    #: False if it cannot. Class-level defaults: an idle connection stores none of these.
    _direct: Callable[[Any], bool] | None = None
    #: A send that began eagerly and suspended: the writer awaits it before anything else.
    _resume: Awaitable[Any] | None = None
    #: What an eager send raised: the writer raises it, as if its own send had.
    _direct_error: Exception | None = None

    def __init__(self, *, maxsize: int = 1000, max_bytes: int = 8 * 1024 * 1024) -> None:
        super().__init__()
        self._queue: collections.deque[Any] | None = None
        self._maxsize = maxsize
        self._max_bytes = max_bytes
        self._bytes = 0  # of what _queue holds
        self._closing = False
        self._closed = False
        self._held = False
        self.close_code = 1000
        self.close_reason = ""
        self._cleanups: list[Callable[[], None]] | None = None
        # Resolves True once the stream's subscription is in place (False if it failed);
        # None for a stream that subscribes to nothing.
        self._subscribed: asyncio.Future[bool] | None = None
        #: The writer task, cancelled when the stream is closed with ``abort``: it must
        #: stop now.
        self._on_abort: asyncio.Future[Any] | None = None
        self._aborted = False
        #: Applied to each ``Frame`` sent once the first frames are out: returns the
        #: frame to send (possibly another one) or None to skip it (``allow_record``).
        self._filter: Callable[[Frame], Frame | None] | None = None
        #: For a short while after the first frames: their versions per record, so the
        #: same state arriving again as a live frame is not sent twice.
        self._floors: dict[str, float] | None = None
        self._floors_until = 0.0

    @property
    def closed(self) -> bool:
        """True once ``close()`` ran (or the client left)."""
        return self._closing

    def send(self, message: Any) -> None:
        """Queue ``message`` for this connection: a ``Frame`` goes out as it is, any other
        value as its JSON. Ignored once the stream is closed."""
        if self._closing:
            return
        if (self._filter is not None or self._floors is not None) and not self._held and isinstance(message, Frame):
            message = self._admit(message)
            if message is None:
                return
        queue = self._queue
        if queue is None:
            direct = self._direct
            if direct is not None and not self._held and direct(message):
                return
            queue = self._queue = collections.deque()
            self._bytes = 0
        size = _cost(message)
        if queue and (len(queue) >= self._maxsize or self._bytes + size > self._max_bytes):
            metrics.throttled_warning(
                "slow_client_closed", "harper_resources: a client read too slowly; its stream was closed (1013)"
            )
            queue.clear()
            self.close(1013, "Client too slow", abort=True)
            return
        queue.append(message)
        self._bytes += size
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
            if self._on_abort is not None:
                self._on_abort.cancel()
        self._wake()

    def _send_failed(self, error: BaseException) -> None:
        """A write to the socket raised. A send to a departed client is a disconnect, not
        an error (uvicorn raises ``ClientDisconnected``, an ``OSError``, or a
        ``RuntimeError`` once it closed the socket itself): the stream ends quietly,
        counted as ``client_gone``. Anything else is logged, throttled (``send_failed``),
        and closes with 1011. Either way queued frames are dropped and later sends
        ignored; the connection ends when the server reports the disconnect."""
        if isinstance(error, CLIENT_GONE):
            metrics.count("client_gone")
            code = 1001, "Going away"
        else:
            metrics.throttled_warning(
                "send_failed", "harper_resources: writing to a client failed; its stream was closed", exc_info=error
            )
            code = 1011, "Server error"
        self._queue = None
        self.close(*code)

    def _suspended(self, rest: Awaitable[Any]) -> None:
        """An eager send suspended: the writer, woken, finishes it (``rest``) first, and
        nothing is sent eagerly until then."""
        self._direct = None
        self._resume = rest
        self._wake()

    def _direct_failed(self, error: Exception) -> None:
        """An eager send raised ``error``: the writer raises it as its own send would."""
        self._direct = None
        self._direct_error = error
        self._wake()

    def _mark_subscribed(self, ok: bool) -> None:
        if self._subscribed is not None and not self._subscribed.done():
            self._subscribed.set_result(ok)

    def _hold(self) -> None:
        """Queue but do not yield messages until ``_release`` (while the first frames load)."""
        self._held = True

    def _admit(self, frame: Frame) -> Frame | None:
        """``frame`` as this stream sends it, or None: a state already shown in the
        first frames is skipped, the rest goes through ``_filter``."""
        floors = self._floors
        if floors is not None and frame.record is not None:
            floor = floors.get(frame.record)
            if floor is not None:
                if frame.version <= floor:
                    return None
                del floors[frame.record]
            if not floors or asyncio.get_running_loop().time() > self._floors_until:
                # Later duplicates can only be frames that were in flight while the first
                # frames were read; older states are dropped by the hub for good.
                self._floors = None
        return frame if self._filter is None else self._filter(frame)

    def _release(self, first: list[Any]) -> None:
        """Send ``first`` (the first frames, read after subscribing) ahead of everything
        queued so far, and start yielding again.

        A live frame that arrived meanwhile and shows a state no newer than the first
        frame of its record is dropped: the first frame already shows it or a newer one.
        The queue may then hold ``len(first)`` more than ``maxsize``, and their bytes more
        than ``max_bytes``: the initial record dump is bounded by its own setting.
        """
        self._held = False
        waiting = self._queue or ()
        queue: collections.deque[Any] = collections.deque()
        for item in first:
            if isinstance(item, Frame) and self._filter is not None:
                item = self._filter(item)
            if item is not None:
                queue.append(item)
        floors = {frame.record: frame.version for frame in first if isinstance(frame, Frame) and frame.record}
        self._floors = floors or None
        for item in waiting:
            if isinstance(item, Frame):
                item = self._admit(item)
            if item is not None:
                queue.append(item)
        self._queue = queue or None
        self._bytes = sum(map(_cost, queue))
        self._maxsize += len(first)
        self._max_bytes += sum(map(_cost, first))
        if floors:
            self._floors_until = asyncio.get_running_loop().time() + FLOOR_SECONDS
        self._wake()

    def _add_cleanup(self, fn: Callable[[], None]) -> None:
        """Run ``fn`` when the connection ends (used for hub subscriptions); at once if
        it has ended already."""
        if self._closed:
            fn()
            return
        if self._cleanups is None:
            self._cleanups = []
        self._cleanups.append(fn)

    def _finish(self) -> None:
        """Called by the connection when it ends: close callbacks, tasks, subscriptions."""
        self.close(self.close_code, self.close_reason)
        if self._closed:
            return
        self._closed = True
        self._queue = None
        for cleanup in self._cleanups or ():
            try:
                cleanup()
            except Exception:
                logger.exception("harper_resources: stream clean-up failed")
        self._cleanups = None
        self._mark_subscribed(False)
        self._on_abort = None
        self._cancel_tasks()
        # After the cancel: an async close callback runs as a task of its own, to the end.
        self._emit("close")

    def __aiter__(self) -> Stream:
        return self

    async def __anext__(self) -> Any:
        while self._held or not self._queue:
            if self._closing:
                raise StopAsyncIteration
            await self._wait()
        message = self._queue.popleft()
        if not self._queue:
            self._queue = None  # an idle connection keeps no queue
        else:
            self._bytes -= _cost(message)
        return message

    def _take_all(self) -> collections.deque[Any] | None:
        """Everything ready to be written, in order (None if nothing is), for the
        connection's writer: one wake-up writes every frame that arrived meanwhile."""
        if self._held:
            return None
        queue, self._queue = self._queue, None  # an idle connection keeps no queue
        return queue


class IncomingMessages(_Emitter):
    """The client's messages: ``on("data", fn)`` and async iteration, usable together.

    Every message goes to the ``data`` callbacks and, while it can still be read, is
    queued for async iteration, which may start later (messages sent before it are not
    lost). A frame is kept as the text or bytes that came off the socket and decoded
    when it is read, so what waits costs what the client sent, not what it decodes to.
    The queue holds at most ``maxsize`` messages and ``max_bytes`` of kept frames (as
    counted by ``sys.getsizeof``). Until something iterates, the oldest messages make
    room for new ones (a resource that never iterates never holds more); once something
    iterates, a full queue means the client sends faster than the resource reads, and
    the connection closes with 1008. Iteration ends when the client leaves.

    ``keep_unread`` says whether frames are kept for an iteration that has not started
    yet. Left None, the connection decides once ``connect()`` returned: off for a
    ``Stream`` (the one of ``super().connect()``: its resource listens with ``on("data")``
    or is iterating already), on for anything else (an async generator reads by
    iterating). When off, a frame that no listener and no iteration takes is dropped
    without being decoded. A resource that returns the stream and starts iterating
    later sets it to True in ``connect()``.
    """

    _events = ("data",)

    def __init__(self, *, maxsize: int = 1000, max_bytes: int = 8 * 1024 * 1024) -> None:
        super().__init__()
        self._queue: collections.deque[tuple[Any, int]] | None = None
        self._maxsize = maxsize
        self._max_bytes = max_bytes
        self._bytes = 0
        self._iterating = False
        self._ended = False
        self.keep_unread: bool | None = None
        #: The connection's format (``codecs``): a binary one decodes binary frames.
        self.codec: Codec | None = None

    def _push(self, message: Any, size: int) -> bool:
        """Deliver one decoded client message of ``size`` bytes. False if the connection
        must close because too much waits unread."""
        self._emit("data", message)
        return self._keep(message, size)

    def _push_frame(self, text: str | None, data: bytes | None) -> bool:
        """Deliver one client frame as the server gave it, decoded only for whoever takes
        it: ``data`` listeners at once, an iteration when it reads it. False if the
        connection must close because too much waits unread."""
        if self._callbacks is not None and self._callbacks.get("data"):
            self._emit("data", self._decode(text, data))
        if self.keep_unread is False and not self._iterating:
            return True
        raw: str | bytes = text if text is not None else (data if data is not None else b"")
        return self._keep(_Unread(text, data), sys.getsizeof(raw))

    def _keep(self, message: Any, size: int) -> bool:
        if self._ended:
            return True
        queue = self._queue
        if queue is None:
            queue = self._queue = collections.deque()
        while queue and (len(queue) >= self._maxsize or self._bytes + size > self._max_bytes):
            if self._iterating:
                metrics.throttled_warning(
                    "incoming_overflow_closed",
                    "harper_resources: a client sent faster than its resource read; closed (1008)",
                )
                return False
            self._bytes -= queue.popleft()[1]
        queue.append((message, size))
        self._bytes += size
        self._wake()
        return True

    def _end(self) -> None:
        self._ended = True
        self._wake()
        self._cancel_tasks()

    def __aiter__(self) -> IncomingMessages:
        self._iterating = True
        return self

    async def __anext__(self) -> Any:
        self._iterating = True
        while not self._queue:
            if self._ended:
                raise StopAsyncIteration
            await self._wait()
        message, size = self._queue.popleft()
        self._bytes -= size
        if not self._queue:
            self._queue = None
        if isinstance(message, _Unread):
            return self._decode(message.text, message.data)
        return message

    def _decode(self, text: str | None, data: bytes | None) -> Any:
        """A client frame as the resource receives it: text as JSON, binary frames in
        the connection's binary format if it has one (``protocol.decode_client_frame``
        and ``Codec.decode_client_frame`` say what an undecodable frame becomes)."""
        codec = self.codec
        if data is not None and codec is not None and codec.binary:
            return codec.decode_client_frame(data)
        return protocol.decode_client_frame(text, data)


class _Unread:
    """A client frame kept for iteration, still as the server gave it."""

    __slots__ = ("data", "text")

    def __init__(self, text: str | None, data: bytes | None) -> None:
        self.text = text
        self.data = data
