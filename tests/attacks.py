"""Raw WebSocket clients that misbehave on purpose, and a server process's memory.

A hostile client does what no library client does: it compresses without the server's
consent, never finishes a fragmented message, or pings without reading. So these speak
the protocol by hand over a socket (client frames masked with a zero key, which is valid
and leaves the payload as it is).
"""

from __future__ import annotations

import base64
import functools
import os
import socket
import struct
import time
import zlib

BINARY, CONTINUATION, CLOSE, PING = 0x2, 0x0, 0x8, 0x9


def open_socket(port: int, path: str, extensions: str | None = None) -> tuple[socket.socket, str]:
    """A WebSocket opened on ``path`` by hand; returns the socket and the response head."""
    sock = socket.create_connection(("127.0.0.1", port), timeout=10)
    key = base64.b64encode(os.urandom(16)).decode()
    lines = [
        f"GET {path} HTTP/1.1",
        f"Host: 127.0.0.1:{port}",
        "Upgrade: websocket",
        "Connection: Upgrade",
        f"Sec-WebSocket-Key: {key}",
        "Sec-WebSocket-Version: 13",
    ]
    if extensions:
        lines.append(f"Sec-WebSocket-Extensions: {extensions}")
    sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode())
    head = b""
    while b"\r\n\r\n" not in head:
        chunk = sock.recv(4096)
        if not chunk:
            raise ConnectionError(f"the server closed during the handshake: {head!r}")
        head += chunk
    text = head.split(b"\r\n\r\n", 1)[0].decode("latin-1")
    assert text.startswith("HTTP/1.1 101"), text
    return sock, text


def frame(opcode: int, payload: bytes, *, fin: bool = True, rsv1: bool = False) -> bytes:
    """One client frame (masked with a zero key)."""
    first = (0x80 if fin else 0) | (0x40 if rsv1 else 0) | opcode
    size = len(payload)
    if size < 126:
        header = struct.pack("!BB", first, 0x80 | size)
    elif size < 1 << 16:
        header = struct.pack("!BBH", first, 0x80 | 126, size)
    else:
        header = struct.pack("!BBQ", first, 0x80 | 127, size)
    return header + b"\0\0\0\0" + payload


@functools.cache
def deflate_bomb(inflated: int = 1900 << 20) -> bytes:
    """A permessage-deflate payload of about 1.8 MiB that inflates to ``inflated`` bytes."""
    compressor = zlib.compressobj(9, zlib.DEFLATED, -15)
    chunk = bytes(16 << 20)
    parts = [compressor.compress(chunk) for _ in range(inflated // len(chunk))]
    parts.append(compressor.flush(zlib.Z_SYNC_FLUSH)[:-4])  # the tail permessage-deflate leaves off
    return b"".join(parts)


def send_until_refused(sock: socket.socket, frames: bytes, *, deadline: float) -> bool:
    """Send ``frames``; True if the server stopped taking them (reset, closed) first."""
    view = memoryview(frames)
    sock.settimeout(1)
    while view and time.monotonic() < deadline:
        try:
            sent = sock.send(view[: 1 << 16])
        except TimeoutError:
            continue
        except OSError:
            return True
        view = view[sent:]
    return False


def ping_flood(sock: socket.socket, *, seconds: float, limit: int = 100 << 20) -> int:
    """Send pings for ``seconds`` (or until ``limit`` bytes) without reading a byte of the
    pongs; returns how many bytes the server took."""
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    pings = frame(PING, bytes(125)) * 4000
    sock.settimeout(1)
    sent = 0
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline and sent < limit:
        try:
            sent += sock.send(pings)
        except TimeoutError:
            continue
        except OSError:
            break
    return sent


def closed_by_server(sock: socket.socket, timeout: float = 10) -> bool:
    """True if the server sends a close frame or ends the connection within ``timeout``
    (whatever else it sends first is skipped)."""
    deadline = time.monotonic() + timeout
    sock.settimeout(0.5)
    buffer = b""
    while time.monotonic() < deadline:
        try:
            chunk = sock.recv(1 << 16)
        except TimeoutError:
            continue
        except OSError:
            return True
        if not chunk:
            return True
        buffer += chunk
        while len(buffer) >= 2:
            opcode, size = buffer[0] & 0x0F, buffer[1] & 0x7F
            offset = 2
            if size == 126:
                if len(buffer) < 4:
                    break
                size, offset = struct.unpack("!H", buffer[2:4])[0], 4
            elif size == 127:
                if len(buffer) < 10:
                    break
                size, offset = struct.unpack("!Q", buffer[2:10])[0], 10
            if opcode == CLOSE:
                return True
            if len(buffer) < offset + size:
                break
            buffer = buffer[offset + size :]
    return False


def memory_kib(pid: int) -> dict[str, int]:
    """``VmRSS`` (now) and ``VmHWM`` (peak) of process ``pid``, in KiB."""
    found = {}
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            name, _, value = line.partition(":")
            if name in ("VmRSS", "VmHWM"):
                found[name] = int(value.split()[0])
    return found


def growth_mib(before: dict[str, int], after: dict[str, int]) -> float:
    """How much the process grew between two ``memory_kib`` readings, peaks included."""
    return max(after["VmRSS"] - before["VmRSS"], after["VmHWM"] - before["VmHWM"]) / 1024
