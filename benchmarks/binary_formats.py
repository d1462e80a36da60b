"""What MessagePack and CBOR frames cost the server, against JSON, on the record path.

    python -m benchmarks.binary_formats            # about 2 minutes; writes RESULTS-binary-formats.md
    python -m benchmarks.binary_formats --quick    # a shorter run, printed only
    python -m benchmarks.run --formats             # the same table at the end of the full run

One harper_resources server (uvicorn pinned to core 0, as in benchmarks.run) per arm and
round; the arms differ only in the path suffix the subscribers connect with
(``/c/dog/1``, ``/c/dog/1.msgpack``, ``/c/dog/1.cbor``), and run interleaved, round
after round, so drift hits them alike. Two scenarios:

- fan-out: 1000 subscribers of one record, saves as fast as they are delivered; each save
  is encoded once per format and written 1000 times (the encoding is shared, the writes
  are not). Figure: server CPU µs per delivered event (median of rounds).
- encoding, in this process: what one change costs in each format (JSON reuses the
  frame's text; MessagePack and CBOR parse it and pack the value), and the frame sizes.
  With one subscriber per record, that cost is paid per delivery; a save costs far more
  (see RESULTS-save-overhead.md).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from benchmarks.client import subscribe
from benchmarks.run import CLIENT_CORE, ROOT, Arm, Server, Tracker, prepare_database, record, saturate

FORMATS = ["json", "msgpack", "cbor"]
SUFFIX = {"json": "", "msgpack": ".msgpack", "cbor": ".cbor"}


def arm(fmt: str) -> Arm:
    return Arm(f"C {fmt}", "benchmarks.channels_app:application", "/c/dog/{rec}" + SUFFIX[fmt], "", "/c/trigger")


async def fan_out(arm: Arm, server: Server, n_subs: int, duration: float) -> dict[str, float]:
    """Saves of record 1 as fast as the subscribers take them (4 in flight)."""
    tracker = Tracker(expected=n_subs)
    subs = await subscribe(server.port, [arm.ws.format(rec=1)] * n_subs, tracker.on_seq)
    await asyncio.sleep(0.5)
    result = await saturate(server, subs, tracker, arm.trigger, "topic=1", duration, 4)
    return {"us_per_delivery": result["server_us_per_delivery"], "lost": result["lost"]}


def encoding_cost(repeat: int = 20_000) -> dict[str, dict[str, float]]:
    """In this process: what one change costs to encode per format, once per resource
    class (JSON reuses the frame's text: nothing), and the frame's size. A demo dog and
    a wide record (datetime, Decimal, UUID, JSON field)."""
    import django

    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "benchmarks.settings")
    django.setup()
    from harper_resources import codecs, protocol
    from harper_resources.streams import Frame, asgi_message

    wide = {
        "id": "3f1c6a2e-2b7d-4d8e-9a55-8f2b1c0d9e77",
        "name": "Desk lamp",
        "price": "129.90",
        "made": "2026-11-29T10:11:12.345Z",
        "serial": "12345678-1234-5678-1234-567812345678",
        "specs": {"watts": 60, "colors": ["black", "white"], "dimmable": True},
        "manual": "manuals/lamp.pdf",
        "stock": 17,
    }
    samples = {"dog": record(341, 12345), "wide": wide}
    results: dict[str, dict[str, float]] = {}
    for sample, value in samples.items():
        text = protocol.put_frame(value["id"], value, 1764411072345.0)
        for codec in (codecs.JSON, codecs.MSGPACK, codecs.CBOR):
            best = float("inf")
            for _ in range(6):  # the first batch warms up; the best batch is the least disturbed
                started = time.perf_counter()
                for _ in range(repeat // 5):
                    message = asgi_message(Frame(text, "harper.x.1", 1.0), codec)
                best = min(best, (time.perf_counter() - started) / (repeat // 5))
            assert message is not None
            size = len(message["bytes"] if "bytes" in message else message["text"].encode())
            results[f"{sample} {codec.name}"] = {"us_per_change": best * 1e6, "bytes": size}
    return results


def scenarios(quick: bool) -> dict[str, Any]:
    scale = 0.5 if quick else 1.0
    return {
        "fan-out, 1000 subscribers of one record": lambda a, s: fan_out(a, s, 1000, 4 * scale),
    }


def measure(env: dict[str, str], quick: bool = False) -> dict[str, dict[str, list[dict[str, float]]]]:
    """Every scenario, ``rounds`` times, the formats interleaved within each round."""
    rounds = 2 if quick else 3
    results: dict[str, dict[str, list[dict[str, float]]]] = {}
    for name, run in scenarios(quick).items():
        results[name] = {fmt: [] for fmt in FORMATS}
        for _ in range(rounds):
            for fmt in FORMATS:
                server = Server(arm(fmt), env)
                try:
                    result = asyncio.run(run(arm(fmt), server))
                finally:
                    server.stop()
                results[name][fmt].append(result)
                print(f"{name:52} {fmt:8} {result}", file=sys.stderr)
    return results


def table(results: dict[str, dict[str, list[dict[str, float]]]], encoding: dict[str, dict[str, float]]) -> str:
    """The Markdown report: median µs per delivery per format and the ratio to JSON;
    then the encoding cost per change and the frame sizes."""
    lines = [
        "## Binary formats: server CPU per delivered event (harper_resources, in-memory layer)",
        "",
        "| scenario | format | server µs/delivery (median) | ratio to JSON | rounds | lost frames |",
        "|---|---|---|---|---|---|",
    ]
    for name, by_format in results.items():
        medians = {fmt: statistics.median(r["us_per_delivery"] for r in runs) for fmt, runs in by_format.items()}
        for fmt, runs in by_format.items():
            each = ", ".join(f"{r['us_per_delivery']:.1f}" for r in runs)
            lost = sum(int(r["lost"]) for r in runs)
            ratio = medians[fmt] / medians["json"] if medians["json"] else float("nan")
            lines.append(f"| {name} | {fmt} | {medians[fmt]:.1f} ({each}) | {ratio:.2f} | {len(runs)} | {lost} |")
    lines += [
        "",
        "Encoding one change (a new `Frame`, as the hub hands it out, turned into its ASGI message; in-process, "
        "best of 6 batches):",
        "",
        "| record | format | µs per change | frame bytes |",
        "|---|---|---|---|",
    ]
    for name, figures in encoding.items():
        sample, fmt = name.split()
        lines.append(f"| {sample} | {fmt} | {figures['us_per_change']:.2f} | {figures['bytes']:.0f} |")
    return "\n".join(lines) + "\n"


def run(quick: bool = False, env: dict[str, str] | None = None) -> str:
    """Measure on a fresh SQLite database (``env``: a benchmarks.run layer environment
    to use instead) and return the Markdown table."""
    workdir = Path(tempfile.mkdtemp(prefix="harper-formats-"))
    if env is None:
        env = {**os.environ, "DJANGO_SETTINGS_MODULE": "benchmarks.settings", "BENCH_DIR": str(workdir)}
        env.pop("REDIS_URL", None)
        prepare_database(env)
    return table(measure(env, quick), encoding_cost(5_000 if quick else 20_000))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="a shorter run, printed only")
    parser.add_argument("--output", default="benchmarks/RESULTS-binary-formats.md", help="where to write the table")
    args = parser.parse_args()
    if hasattr(os, "sched_setaffinity") and (os.cpu_count() or 1) > 1:
        os.sched_setaffinity(0, {CLIENT_CORE})
    report = run(args.quick)
    print(report)
    if not args.quick:
        load = ", ".join(f"{value:.1f}" for value in os.getloadavg())
        header = (
            f"Command: `python -m benchmarks.binary_formats`; load average at the end: {load} ({os.cpu_count()} cores)"
        )
        (ROOT / args.output).write_text(f"{header}\n\n{report}")
        print(f"written to {args.output}")


if __name__ == "__main__":
    main()
