"""Server-side protection no command-line flag gives: backpressure on pongs.

A client that sends pings and never reads makes every server buffer the pongs it owes
without bound (uvicorn and daphne answer each ping at once). These hooks stop reading
such a client while what the server owes it is above the transport's high-water mark
(64 KiB), so its pings wait in its own socket buffers; the server's keepalive ping then
goes unanswered and the connection ends (``--ws-ping-interval`` + ``--ws-ping-timeout``).

- uvicorn: ``uvicorn --ws harper_resources.servers:UvicornWebSocketProtocol ...``.
- daphne (and ``runserver`` under daphne): ``bound_daphne_pongs()`` once at start-up, e.g.
  in ``asgi.py``; it is a no-op where daphne is not installed.

A client that reads slowly but does read is slowed, not refused.
"""

from __future__ import annotations

from typing import Any

try:
    from uvicorn.protocols.websockets.websockets_sansio_impl import WebSocketsSansIOProtocol
except ImportError:  # uvicorn (or websockets) not installed: the class is not offered
    pass
else:

    class UvicornWebSocketProtocol(WebSocketsSansIOProtocol):
        """uvicorn's default WebSocket protocol, except that it stops reading the client
        while its transport's write buffer is above the high-water mark."""

        _writes_paused = False

        def pause_writing(self) -> None:
            super().pause_writing()
            self._writes_paused = True
            self.transport.pause_reading()

        def resume_writing(self) -> None:
            super().resume_writing()
            self._writes_paused = False
            if not self.read_paused and not self.transport.is_closing():
                self.transport.resume_reading()

        async def receive(self) -> Any:
            # uvicorn resumes reading once the application has taken every message;
            # while writes are paused it must stay paused.
            message = await super().receive()
            if self._writes_paused and not self.transport.is_closing():
                self.transport.pause_reading()
            return message


_daphne_bounded = False


def bound_daphne_pongs() -> None:
    """Make daphne stop reading a WebSocket client while its write buffer is full (see
    the module docstring). Safe to call more than once; does nothing without daphne."""
    global _daphne_bounded
    if _daphne_bounded:
        return
    try:
        from daphne.ws_protocol import WebSocketProtocol
    except ImportError:
        return
    original = WebSocketProtocol.onOpen

    def on_open(self: Any) -> None:
        transport = self.transport
        # The HTTP channel that did the upgrade is still the transport's producer and no
        # longer reacts; make a TCP transport pause its own reading when writes back up
        # (a TLS wrapper is left as it is).
        if hasattr(transport, "registerProducer") and hasattr(transport, "pauseProducing"):
            if getattr(transport, "producer", None) is not None:
                transport.unregisterProducer()
            transport.registerProducer(transport, True)
        original(self)

    WebSocketProtocol.onOpen = on_open
    _daphne_bounded = True
