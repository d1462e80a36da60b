"""The SSE arm: harper_resources' record stream as Server-Sent Events against the same
stream over WebSocket (arm C), on one server app (``benchmarks.sse_app``).

    python -m benchmarks.run --only sse --no-write   # this arm alone, printed

Scenarios, each run for both transports back to back on a fresh server: CPU per
delivered event (1000 subscribers of one record, changes saved as fast as a window of
4 lets them), latency with 100 subscribers, and KiB of server memory per idle
connection (1000 and 5000 connections).
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable
from typing import Any

from benchmarks.client import Trigger
from benchmarks.client import subscribe as subscribe_websockets

AGE = b'"age":'
WS, SSE = "C WebSocket", "C SSE"
APP = "benchmarks.sse_app:application"
SCENARIO_PREFIX = "sse: "


class EventSubscriber(asyncio.Protocol):
    """One event stream. Calls ``on_seq(seq, now)`` for each event whose record carries
    ``"age": seq``. Reads the chunked body as it comes: every event ends with a blank
    line, and the server writes whole events, so chunk-size lines fall between events."""

    def __init__(self, path: str, on_seq: Callable[[int, float], None], opened: asyncio.Future[None]) -> None:
        self.path, self.on_seq, self.opened = path, on_seq, opened
        self.buffer = b""
        self.started = False
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        transport.write(  # type: ignore[attr-defined]
            f"GET {self.path} HTTP/1.1\r\nHost: 127.0.0.1\r\nAccept: text/event-stream\r\n\r\n".encode()
        )

    def data_received(self, data: bytes) -> None:
        buf = self.buffer + data
        if not self.started:
            end = buf.find(b"\r\n\r\n")
            if end < 0:
                self.buffer = buf
                return
            status = buf[: buf.find(b"\r\n")]
            buf = buf[end + 4 :]
            self.started = True
            if not self.opened.done():
                if b" 200 " in status:
                    self.opened.set_result(None)
                else:
                    self.opened.set_exception(ConnectionError(status.decode()))
                    return
        now = time.perf_counter()
        pos = 0
        while True:
            end = buf.find(b"\n\n", pos)
            if end < 0:
                break
            i = buf.rfind(AGE, pos, end)
            if i >= 0:
                j = k = i + len(AGE)
                while k < end and 48 <= buf[k] <= 57:
                    k += 1
                self.on_seq(int(buf[j:k]), now)
            pos = end + 2
        self.buffer = buf[pos:]

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.opened.done():
            self.opened.set_exception(ConnectionError("closed before the response"))

    def close(self) -> None:
        if self.transport is not None:
            self.transport.close()


async def subscribe_events(port: int, paths: list[str], on_seq: Callable[[int, float], None]) -> list[Any]:
    """Open one event stream per path (200 at a time) and wait until all answered."""
    loop = asyncio.get_running_loop()
    subscribers: list[EventSubscriber] = []
    for start in range(0, len(paths), 200):
        batch = []
        for path in paths[start : start + 200]:
            opened: asyncio.Future[None] = loop.create_future()
            _, protocol = await loop.create_connection(
                lambda p=path, o=opened: EventSubscriber(p, on_seq, o), "127.0.0.1", port
            )
            batch.append(protocol)
        await asyncio.gather(*(s.opened for s in batch))
        subscribers.extend(batch)
    return subscribers


OPENERS: dict[str, Callable[..., Any]] = {WS: subscribe_websockets, SSE: subscribe_events}


async def capacity(transport: str, port: int, n_subs: int, duration: float, window: int, server: Any) -> dict[str, Any]:
    from benchmarks.run import Tracker, saturate

    tracker = Tracker(expected=n_subs)
    subs = await OPENERS[transport](port, ["/c/dog/1"] * n_subs, tracker.on_seq)
    await asyncio.sleep(0.5)
    return await saturate(server, subs, tracker, "/c/trigger", "", duration, window)


async def latency(transport: str, port: int, n_subs: int, changes: int, server: Any) -> dict[str, Any]:
    from benchmarks.run import Tracker, one_change_at_a_time

    tracker = Tracker(expected=n_subs)
    subs = await OPENERS[transport](port, ["/c/dog/1"] * n_subs, tracker.on_seq)
    await asyncio.sleep(0.5)
    return await one_change_at_a_time(Trigger(port, "/c/trigger"), subs, tracker, "", changes, 0.2)


async def idle_memory(transport: str, port: int, n: int, server: Any) -> dict[str, Any]:
    from benchmarks.run import close_all

    # Warm up first: what is paid once per process is not paid per connection.
    await close_all(await OPENERS[transport](port, ["/c/dog/1"] * 20, lambda seq, now: None))
    await asyncio.sleep(0.5)
    before = server.rss_kib()
    subs = await OPENERS[transport](port, ["/c/dog/1"] * n, lambda seq, now: None)
    await asyncio.sleep(2.0)
    after = server.rss_kib()
    await close_all(subs)
    return {"kib_per_connection": (after - before) / n}


def scenarios(quick: bool) -> list[tuple[str, Callable[[str, int, Any], Any]]]:
    scale = 0.5 if quick else 1.0
    return [
        (
            "CPU per delivered event, 1000 subscribers",
            lambda t, port, s: capacity(t, port, 1000, 5 * scale, 4, s),
        ),
        ("latency, 100 subscribers", lambda t, port, s: latency(t, port, 100, int(20 * scale), s)),
        ("idle memory, 1k connections", lambda t, port, s: idle_memory(t, port, 1000, s)),
        ("idle memory, 5k connections", lambda t, port, s: idle_memory(t, port, 5000, s)),
    ]


def run(layers: dict[str, dict[str, str]], quick: bool, only: str = "") -> dict[tuple[str, str, str], dict[str, Any]]:
    """Every SSE scenario (whose name, prefixed ``sse: ``, contains ``only``) on every
    layer, WebSocket and SSE back to back, each on a fresh server."""
    from benchmarks.run import Arm, Server

    arm = Arm("C SSE", APP, "/c/dog/{rec}", "/c/dog/", "/c/trigger")
    results: dict[tuple[str, str, str], dict[str, Any]] = {}
    for name, scenario in scenarios(quick):
        if only not in SCENARIO_PREFIX + name:
            continue
        for layer, env in layers.items():
            for transport in (WS, SSE):
                server = Server(arm, env)
                try:
                    result = asyncio.run(scenario(transport, server.port, server))
                finally:
                    server.stop()
                results[(name, layer, transport)] = result
                print(f"{SCENARIO_PREFIX + name:48} {layer:16} {transport:20} {json.dumps(result, default=round)}")
    return results


def render(results: dict[tuple[str, str, str], dict[str, Any]]) -> str:
    """The SSE section of RESULTS.md: per scenario a table of both transports and the
    SSE/WebSocket ratio of the scenario's main figure."""
    from benchmarks.report import COLUMNS, fmt

    if not results:
        return ""
    lines = [
        "",
        "## SSE arm: the record stream as Server-Sent Events against WebSocket (arm C)",
        "",
        "One server app (`benchmarks/sse_app.py`): `DogBench` over WebSocket and over `text/event-stream`",
        "(`sse.serve_events`); each transport on a fresh uvicorn, back to back. Same triggers, same frames.",
        "",
    ]
    for scenario in dict.fromkeys(key[0] for key in results):
        rows = {key[1:]: value for key, value in results.items() if key[0] == scenario}
        metrics = list(dict.fromkeys(metric for value in rows.values() for metric in value))
        lines += [
            f"### {scenario}",
            "",
            "| layer | transport | " + " | ".join(COLUMNS.get(m, m) for m in metrics) + " |",
        ]
        lines.append("| --- | --- |" + " --- |" * len(metrics))
        for (layer, transport), value in rows.items():
            lines.append(f"| {layer} | {transport} | " + " | ".join(fmt(value.get(m)) for m in metrics) + " |")
        main = next((m for m in ("server_us_per_delivery", "kib_per_connection", "p50_ms") if m in metrics), None)
        if main is not None:
            for layer in dict.fromkeys(key[0] for key in rows):
                try:
                    factor = rows[(layer, SSE)][main] / rows[(layer, WS)][main]
                except (KeyError, ZeroDivisionError):
                    continue
                lines.append("")
                lines.append(f"{layer}: SSE / WebSocket {COLUMNS.get(main, main)} = {factor:.2f}")
        lines.append("")
    return "\n".join(lines)
