"""Server-Sent Events on a resource's path: ``GET`` with ``Accept: text/event-stream``.

``serve_events(resource, scope, receive, send)`` serves one ``EventSource`` with the
same stream a WebSocket on that path gets:

- Authorised as the WebSocket handshake is (``Resource._authorise``); a refusal is a JSON
  answer: 401 (with ``WWW-Authenticate: Basic``) where the socket would close 3000, 403
  for 3003, 404 for 4404, 400 for 4400 (a bad ``since``, ``Last-Event-ID`` and the
  like), 500 when ``connect()`` fails.
- Then ``200 text/event-stream`` at once, before any event. Each ``put``/``delete``
  frame is one event: ``id: <version>`` and ``data: <the frame's JSON>``, the very text
  a WebSocket client gets. What is no record state (``message`` frames, ``reset``, and
  whatever a resource sends or yields itself, like the demo's pulse) goes out as
  ``data:`` alone, so the browser's last event id stays the last version it saw.
  Bytes a resource sends go out as a JSON string of their base64.
- A comment line (``: keep-alive``) whenever nothing was written for
  ``HARPER_RESOURCES_SSE_KEEPALIVE`` seconds (15 by default), so proxies keep the
  response open and a dead client is noticed.
- ``Last-Event-ID`` (sent by a reconnecting ``EventSource``) resumes as ``?since=``; it
  replaces a ``since`` in the query string.
- ``connect()`` gets an ``IncomingMessages`` that never yields (an ``EventSource`` sends
  nothing after its request): ``on("data")`` callbacks never run, and iterating it ends
  when the client leaves. So overridden ``connect()`` methods and generators work as
  they are.
- When the stream ends by itself (closed by the resource, a client too slow for the
  send queue, a user who lost access), a last ``event: close`` carries
  ``{"code", "reason"}`` (the WebSocket close code) and the response ends; the browser
  reconnects on its own, with ``Last-Event-ID``.
- When the client leaves, everything is ended as after a WebSocket close: streams,
  their tasks and close callbacks, hub subscriptions.

Per connection this costs two small tasks (one waits for the disconnect, one writes),
never a thread; frames waiting to be written are bounded as on a WebSocket.
"""

from __future__ import annotations

import asyncio
import logging
import math
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qsl, urlencode

from . import closing, http, metrics, protocol, reauth
from .conf import settings
from .exceptions import BadRequest, CloseConnection
from .streams import Frame, IncomingMessages, Stream

if TYPE_CHECKING:
    from .consumers import Resource

logger = logging.getLogger("harper_resources")

Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]

CONTENT_TYPE = b"text/event-stream"
# Comments are single lines with no blank line after them: a blank line would end an
# empty event, which some clients (httpx-sse) hand on as an event with empty data.
KEEPALIVE = b": keep-alive\n"
#: The first bytes of the body, written with the headers so every server sends both at once.
OPENING = b": open\n"

RESPONSE_HEADERS = [
    (b"content-type", b"text/event-stream; charset=utf-8"),
    (b"cache-control", b"no-cache"),
    (b"x-accel-buffering", b"no"),
]

#: The HTTP status of a refusal, by the close code a WebSocket would get.
STATUS_BY_CODE = {3000: 401, 3003: 403, 4400: 400, 4404: 404, 1008: 400, 1011: 500, 1013: 503}


def status_for(code: int) -> int:
    """The HTTP status of a connection refused with close ``code`` (4000 + s for an HTTP
    status s, as in 4404, maps to s; anything else unknown is 500)."""
    if code in STATUS_BY_CODE:
        return STATUS_BY_CODE[code]
    if 4400 <= code < 4600:
        return code - 4000
    return 500


#: How far (ms) before its ``Last-Event-ID`` a collection's resume reaches: versions of
#: one record follow commit order, two records' need not (a transaction may take its
#: version before another commits and commit after it), and an EventSource cannot
#: choose where to resume from. States the client already has may come again.
RESUME_OVERLAP = 60_000.0


def resumed_scope(scope: dict[str, Any], overlap: float = 0.0) -> dict[str, Any]:
    """``scope`` with a ``Last-Event-ID`` header turned into ``since`` in the query
    string (replacing any ``since`` there), ``overlap`` ms earlier; ``scope`` itself
    without one. Raises ``BadRequest`` for a header that is no finite number."""
    last = None
    for name, value in scope.get("headers", ()):
        if name.lower() == b"last-event-id":
            last = value.decode("latin-1").strip()
    if not last:
        return scope
    try:
        since = float(last)
    except ValueError:
        raise BadRequest("Last-Event-ID must be a version (a number)") from None
    if not math.isfinite(since):
        raise BadRequest("Last-Event-ID must be a finite number")
    query = scope.get("query_string", b"")
    if isinstance(query, bytes):
        query = query.decode("latin-1")
    pairs = [(key, value) for key, value in parse_qsl(query, keep_blank_values=True) if key != "since"]
    pairs.append(("since", protocol.encode(since - overlap) if overlap else last))
    return {**scope, "query_string": urlencode(pairs).encode("latin-1")}


def encode_event(item: Any) -> bytes | None:
    """One event for one outgoing item: ``id:`` and ``data:`` for a record state, only
    ``data:`` for anything else. None (logged) for a value JSON cannot encode. A
    ``Frame`` is shared by every subscriber of a change: its event is made once and kept
    on it (``Frame.cached``)."""
    if isinstance(item, Frame):
        return item.cached("text/event-stream", _frame_event)
    try:
        text = protocol.encode(bytes(item) if isinstance(item, bytearray) else item)
    except (TypeError, ValueError):
        logger.error("harper_resources: a resource sent a value JSON cannot encode: %r", item)
        return None
    return _event("", text)


def _frame_event(frame: Frame) -> bytes:
    head = f"id: {protocol.encode(frame.version)}\n" if frame.record is not None else ""
    return _event(head, frame.text)


def _event(head: str, text: str) -> bytes:
    if "\n" in text or "\r" in text:
        # JSON from protocol.encode has no line breaks; a Frame made by hand may.
        text = "\ndata: ".join(text.splitlines())
    return f"{head}data: {text}\n\n".encode()


def close_event(code: int, reason: str) -> bytes:
    """The last event of a stream that ended by itself: why, as a WebSocket close says."""
    return f"event: close\ndata: {protocol.encode({'code': code, 'reason': reason})}\n\n".encode()


async def refuse(send: Send, error: CloseConnection) -> None:
    """The JSON answer to a refused connection (401 also names the Basic scheme)."""
    status = status_for(error.code)
    headers = http.unauthorized_headers() if status == 401 else []
    await http.respond_json(send, status, {"error": error.reason or "Refused", "code": error.code}, headers)


async def serve_events(resource: Resource, scope: dict[str, Any], receive: Receive, send: Send) -> None:
    """Serve ``resource`` (a new instance, not yet used) as an event stream on the HTTP
    ``scope`` (``url_route`` kwargs and ``user`` set by routing and auth) until the
    client leaves or the stream ends."""
    incoming = IncomingMessages(maxsize=1, max_bytes=0)
    incoming.keep_unread = False
    resource.scope = scope
    try:
        try:
            kwargs = (scope.get("url_route") or {}).get("kwargs") or {}
            overlap = RESUME_OVERLAP if resource.id_kwarg not in kwargs else 0.0  # a collection
            scope = resource.scope = resumed_scope(scope, overlap)
            await resource._authorise()
            outgoing = await resource._open(incoming)
            await resource._subscriptions_ready()
            if resource._close_request is not None:  # close() called in connect(): a refusal
                raise CloseConnection(*resource._close_request)
        except CloseConnection as exc:
            closing.log_refusal(scope, resource.user, exc.code)
            await refuse(send, exc)
            return
        except Exception:
            name = type(resource).__name__
            metrics.throttled_error(
                f"connect_failed.{name}", "harper_resources: connect() of %s failed", name, exc_info=True
            )
            await http.respond_json(send, 500, {"error": "Server error", "code": 1011})
            return
        try:
            await send({"type": "http.response.start", "status": 200, "headers": RESPONSE_HEADERS})
            await send({"type": "http.response.body", "body": OPENING + _early_events(resource), "more_body": True})
        except OSError:
            await resource._aclose(outgoing)
            return  # the client left already
        if resource.user.is_authenticated:
            reauth.watch(resource)  # losing access ends the stream
        try:
            await _run(resource, receive, send, outgoing, incoming)
        finally:
            reauth.unwatch(resource)
    finally:
        # Also when the task is cancelled (server shutdown): the CancelledError goes on.
        resource._finish(incoming)


def _early_events(resource: Resource) -> bytes:
    """What ``self.send()`` sent in ``connect()``, before the stream existed, as events."""
    early, resource._early = resource._early, None
    events = []
    for message in early or ():
        text = message.get("text")
        # Text goes out as it was sent, not as a JSON string of it; bytes as their base64.
        event = _event("", text) if text is not None else encode_event(message.get("bytes", b""))
        if event is not None:
            events.append(event)
    return b"".join(events)


async def _until_disconnect(receive: Receive) -> None:
    while (await receive())["type"] != "http.disconnect":
        pass


async def _run(
    resource: Resource, receive: Receive, send: Send, outgoing: AsyncIterator[Any], incoming: IncomingMessages
) -> None:
    reader = asyncio.ensure_future(_until_disconnect(receive))
    writer = resource._writer = asyncio.ensure_future(_write(outgoing, send))
    for stream in resource._streams:
        # A stream closed with abort (a client too slow) stops the writer at once.
        stream._on_abort = writer
    try:
        await asyncio.wait((reader, writer), return_when=asyncio.FIRST_COMPLETED)
    finally:
        left = reader.done()
        reader.cancel()
        writer.cancel()
        await asyncio.gather(writer, reader, return_exceptions=True)
        error = None if writer.cancelled() else writer.exception()
        # Why the stream ended, read before the streams are finished.
        code, reason = resource._writer_close(error if not isinstance(error, OSError) else None)
        await resource._aclose(outgoing)
        resource._finish(incoming)  # before any goodbye: a client that reads nothing holds no stream
    if left or isinstance(error, OSError):
        return  # nobody to tell
    # The stream ended by itself: say why (unless it simply ended) and end the response,
    # waiting no longer than a keep-alive interval for a client that reads nothing.
    goodbye = close_event(code, reason) if code != 1000 else b""
    try:
        await asyncio.wait_for(
            send({"type": "http.response.body", "body": goodbye, "more_body": False}),
            timeout=float(settings.SSE_KEEPALIVE),
        )
    except Exception:
        pass  # the client left meanwhile, or reads nothing: the server drops it


async def _write(outgoing: AsyncIterator[Any], send: Send) -> None:
    """Write ``outgoing`` as events until it ends (raises ``OSError`` if the client is
    gone, as uvicorn's ``ClientDisconnected`` is)."""
    keepalive = float(settings.SSE_KEEPALIVE)
    try:
        if isinstance(outgoing, Stream):
            await _write_stream(outgoing, send, keepalive)
        else:
            await _write_iterator(outgoing, send, keepalive)
    except OSError:
        metrics.count("client_gone")
        raise


async def _write_stream(stream: Stream, send: Send, keepalive: float) -> None:
    # One wake-up writes every frame that arrived meanwhile, as one body chunk. The
    # keep-alive is a timer per connection that wakes the writer only when it was idle
    # for ``keepalive`` seconds: a write costs one clock read, never a timer.
    timer = _KeepAlive(stream, keepalive)
    try:
        while True:
            batch = stream._take_all()
            if batch:
                body = b"".join(event for event in map(encode_event, batch) if event is not None)
                if body:
                    await send({"type": "http.response.body", "body": body, "more_body": True})
                    timer.wrote()
            elif stream.closed:
                return
            elif timer.due:
                timer.due = False
                await send({"type": "http.response.body", "body": KEEPALIVE, "more_body": True})
                timer.wrote()
            else:
                await stream._wait()
    finally:
        timer.cancel()


class _KeepAlive:
    """Sets ``due`` and wakes ``stream``'s writer once it wrote nothing for ``interval`` s."""

    __slots__ = ("due", "handle", "interval", "last", "loop", "stream")

    def __init__(self, stream: Stream, interval: float) -> None:
        self.loop = asyncio.get_running_loop()
        self.stream = stream
        self.interval = interval
        self.due = False
        self.last = self.loop.time()
        self.handle: asyncio.TimerHandle | None = self.loop.call_at(self.last + interval, self._tick)

    def wrote(self) -> None:
        self.last = self.loop.time()

    def _tick(self) -> None:
        now = self.loop.time()
        if now - self.last >= self.interval:
            self.due = True
            self.stream._wake()
            self.handle = self.loop.call_at(now + self.interval, self._tick)
        else:
            self.handle = self.loop.call_at(self.last + self.interval, self._tick)

    def cancel(self) -> None:
        if self.handle is not None:
            self.handle.cancel()
            self.handle = None


async def _write_iterator(outgoing: AsyncIterator[Any], send: Send, keepalive: float) -> None:
    # Each next item is awaited in a task of its own, so a keep-alive can go out while
    # the generator waits; the generator is never cancelled for one.
    pending: asyncio.Future[Any] | None = None
    try:
        while True:
            if pending is None:
                pending = asyncio.ensure_future(outgoing.__anext__())
            done, _ = await asyncio.wait((pending,), timeout=keepalive)
            if not done:
                await send({"type": "http.response.body", "body": KEEPALIVE, "more_body": True})
                continue
            try:
                item = pending.result()
            except StopAsyncIteration:
                return
            finally:
                pending = None
            event = encode_event(item)
            if event is not None:
                await send({"type": "http.response.body", "body": event, "more_body": True})
    finally:
        if pending is not None and not pending.done():
            pending.cancel()
            await asyncio.gather(pending, return_exceptions=True)
