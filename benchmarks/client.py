"""A light benchmark client: many WebSocket subscribers and HTTP triggers on one event
loop, with hand-written framing so the client spends as little CPU as it can."""

from __future__ import annotations

import asyncio
import base64
import json
import os
import time
from collections.abc import Callable

AGE = b'"age"'
#: The key "age" in MessagePack (fixstr) and in CBOR (text string), and the integer
#: heads that may follow it: (first byte, bytes after it) for uint8/16/32/64.
BINARY_AGE = {b"\xa3age": {0xCC: 1, 0xCD: 2, 0xCE: 4, 0xCF: 8}, b"\x63age": {0x18: 1, 0x19: 2, 0x1A: 4, 0x1B: 8}}


def binary_seq(payload: bytes) -> int | None:
    """The ``age`` in a MessagePack or CBOR frame, read without decoding the frame."""
    for key, heads in BINARY_AGE.items():
        i = payload.rfind(key)
        if i < 0 or i + len(key) >= len(payload):
            continue
        head = payload[i + len(key)]
        if head < 0x18 or (key == b"\xa3age" and head < 0x80):
            return head  # a small integer held in the head byte itself
        size = heads.get(head)
        if size is not None:
            return int.from_bytes(payload[i + len(key) + 1 : i + len(key) + 1 + size], "big")
    return None


class Subscriber(asyncio.Protocol):
    """One WebSocket connection. Calls ``on_seq(seq, now)`` for each frame whose record
    carries ``"age": seq`` (JSON text, or MessagePack/CBOR binary); counts every frame."""

    def __init__(
        self, path: str, on_seq: Callable[[int, float], None], opened: asyncio.Future[None], headers: str = ""
    ) -> None:
        self.path, self.on_seq, self.opened, self.headers = path, on_seq, opened, headers
        self.buffer = b""
        self.handshaken = False
        self.frames = 0
        self.transport: asyncio.Transport | None = None
        self.closed = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        key = base64.b64encode(os.urandom(16)).decode()
        transport.write(  # type: ignore[attr-defined]
            f"GET {self.path} HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n{self.headers}\r\n".encode()
        )

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        if not self.handshaken:
            end = self.buffer.find(b"\r\n\r\n")
            if end < 0:
                return
            status = self.buffer[: self.buffer.find(b"\r\n")]
            self.buffer = self.buffer[end + 4 :]
            self.handshaken = True
            if b" 101 " not in status and not self.opened.done():
                self.opened.set_exception(ConnectionError(status.decode()))
                return
            if not self.opened.done():
                self.opened.set_result(None)
        buf = self.buffer
        pos = 0
        now = time.perf_counter()
        while len(buf) - pos >= 2:
            opcode = buf[pos] & 0x0F
            length = buf[pos + 1] & 0x7F
            head = 2
            if length == 126:
                if len(buf) - pos < 4:
                    break
                length = int.from_bytes(buf[pos + 2 : pos + 4], "big")
                head = 4
            elif length == 127:
                if len(buf) - pos < 10:
                    break
                length = int.from_bytes(buf[pos + 2 : pos + 10], "big")
                head = 10
            if len(buf) - pos < head + length:
                break
            payload = buf[pos + head : pos + head + length]
            pos += head + length
            if opcode == 0x1:
                self.frames += 1
                i = payload.rfind(AGE)
                if i >= 0:
                    j = i + len(AGE)
                    # json.dumps writes '"age": 5', PostgreSQL's json_build_object (the
                    # capture trigger's frames) '"age" : 5'.
                    while j < len(payload) and payload[j] in b" :":
                        j += 1
                    k = j
                    while k < len(payload) and 48 <= payload[k] <= 57:
                        k += 1
                    self.on_seq(int(payload[j:k]), now)
            elif opcode == 0x2:
                self.frames += 1
                seq = binary_seq(payload)
                if seq is not None:
                    self.on_seq(seq, now)
            elif opcode == 0x8:
                self.closed = True
        self.buffer = buf[pos:]

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        if not self.opened.done():
            self.opened.set_exception(ConnectionError("closed during handshake"))

    def close(self) -> None:
        if self.transport is not None:
            self.transport.close()


async def subscribe(
    port: int, paths: list[str], on_seq: Callable[[int, float], None], headers: str = ""
) -> list[Subscriber]:
    """Open one subscriber per path (a few hundred at a time) and wait until all are open.
    ``headers``: extra request header lines, each ending in CRLF (a cookie, say)."""
    loop = asyncio.get_running_loop()
    subscribers: list[Subscriber] = []
    for start in range(0, len(paths), 200):
        batch = []
        for path in paths[start : start + 200]:
            opened: asyncio.Future[None] = loop.create_future()
            _, protocol = await loop.create_connection(
                lambda p=path, o=opened: Subscriber(p, on_seq, o, headers), "127.0.0.1", port
            )
            batch.append(protocol)
        await asyncio.gather(*(s.opened for s in batch))
        subscribers.extend(batch)
    return subscribers


class Trigger:
    """Keep-alive HTTP/1.1 requests that make one change each: ``"POST /trigger"`` (a
    trigger endpoint; the change's topics in the query) or ``"PUT /c/dog/{rec}"`` (a REST
    write of the record; ``{rec}`` is its id). A bare path means POST."""

    def __init__(self, port: int, spec: str, headers: str = "") -> None:
        self.headers = headers  # extra header lines, each ending in \r\n
        self.method, _, self.path = spec.rpartition(" ")
        self.method = self.method or "POST"
        self.port = port
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def post(self, record: dict[str, object], query: str = "") -> None:
        if self.writer is None:
            self.reader, self.writer = await asyncio.open_connection("127.0.0.1", self.port)
        body = json.dumps(record).encode()
        path = self.path.format(rec=record["id"])
        self.writer.write(
            f"{self.method} {path}?{query} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
            f"{self.headers}Content-Length: {len(body)}\r\n\r\n".encode()
            + body
        )
        assert self.reader is not None
        head = await self.reader.readuntil(b"\r\n\r\n")
        status = head.split(b"\r\n", 1)[0]
        if b" 204 " not in status and b" 200 " not in status:
            raise RuntimeError(f"trigger failed: {head[:200]!r}")
        for line in head.lower().split(b"\r\n"):
            if line.startswith(b"content-length:"):
                await self.reader.readexactly(int(line.split(b":", 1)[1]))

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
