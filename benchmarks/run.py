"""The benchmark suite: raw ASGI (A), stock Channels (B) and harper_resources (C), side
by side and interleaved, on the in-memory and the Redis layer.

    python -m benchmarks.run            # everything, about 6 minutes; writes RESULTS.md
    python -m benchmarks.run --quick    # a smaller run to try it out
    python -m benchmarks.run --formats  # also JSON against MessagePack and CBOR (benchmarks.binary_formats)
    python -m benchmarks.run --only handshakes   # only the handshake rows (benchmarks/handshakes.py)

Every arm is served by uvicorn pinned to core 0; this client is pinned to core 1 (Redis,
when used, is not pinned). Figures are per run: compare arms within one run, as ratios.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import os
import platform
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from benchmarks import sse
from benchmarks.client import Trigger, subscribe

ROOT = Path(__file__).resolve().parent.parent
TICK = os.sysconf("SC_CLK_TCK")
#: Connections the many-records scenario posts its changes on, concurrently.
TRIGGERS = 4
SERVER_CORE, CLIENT_CORE = 0, 1
#: The benchmark's user (a superuser, made by ``prepare_database``) and its Basic header.
USERNAME, PASSWORD = "bench", "bench-password"
BASIC = "Authorization: Basic " + base64.b64encode(f"{USERNAME}:{PASSWORD}".encode()).decode() + "\r\n"


@dataclass
class Arm:
    name: str
    app: str
    ws: str  # path of record {rec}
    collection: str
    trigger: str  # "POST /path" or "PUT /c/dog/{rec}" (client.Trigger)
    trigger_headers: str = ""


ARMS = [
    Arm("A raw ASGI", "benchmarks.raw_app:app", "/ws/{rec}", "/ws/all", "/trigger"),
    Arm("B stock Channels", "benchmarks.channels_app:application", "/b/ws/{rec}", "/b/ws/all", "/b/trigger"),
    # C's changes are REST writes of the record, as a Harper client makes them (HTTP Basic,
    # a verified login cached; the default allow_update: the model's change permission).
    Arm(
        "C harper_resources",
        "benchmarks.channels_app:application",
        "/c/dog/{rec}",
        "/c/dog/",
        "PUT /c/dog/{rec}",
        BASIC,
    ),
]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Server:
    """``uvicorn APP`` pinned to the server core; RSS and CPU read from /proc."""

    def __init__(self, arm: Arm, env: dict[str, str]) -> None:
        self.port = free_port()
        cmd = [sys.executable, "-m", "uvicorn", "--host", "127.0.0.1", "--port", str(self.port)]
        cmd += ["--log-level", "warning", "--no-access-log", "--ws", "websockets-sansio", arm.app]
        if shutil.which("taskset"):
            cmd = ["taskset", "-c", str(SERVER_CORE), *cmd]
        self.process = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.DEVNULL)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.2):
                    return
            except OSError:
                time.sleep(0.05)
        raise RuntimeError(f"{arm.name} did not start")

    def cpu_seconds(self) -> float:
        fields = Path(f"/proc/{self.process.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / TICK

    def rss_kib(self) -> int:
        for line in Path(f"/proc/{self.process.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
        return 0

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()


@dataclass
class Tracker:
    """Counts deliveries per change and when each change reached all its subscribers."""

    expected: int
    counts: dict[int, int] = field(default_factory=lambda: defaultdict(int))
    sent: dict[int, float] = field(default_factory=dict)
    complete: dict[int, float] = field(default_factory=dict)
    waiters: dict[int, asyncio.Future[None]] = field(default_factory=dict)
    delivered: int = 0

    def on_seq(self, seq: int, now: float) -> None:
        if seq not in self.sent:
            return
        self.delivered += 1
        self.counts[seq] += 1
        if self.counts[seq] == self.expected:
            self.complete[seq] = now
            waiter = self.waiters.pop(seq, None)
            if waiter is not None and not waiter.done():
                waiter.set_result(None)

    def start(self, seq: int) -> asyncio.Future[None]:
        self.sent[seq] = time.perf_counter()
        waiter = asyncio.get_running_loop().create_future()
        self.waiters[seq] = waiter
        return waiter

    def latencies_ms(self) -> list[float]:
        return sorted((self.complete[s] - self.sent[s]) * 1000 for s in self.complete)

    def lost(self) -> int:
        return self.expected * len(self.sent) - sum(self.counts.values())


_seq = [1000]


def next_seq() -> int:
    _seq[0] += 1
    return _seq[0]


def record(rec: int, seq: int) -> dict[str, Any]:
    return {"id": rec, "name": f"Dog {rec}", "breed": "Beagle", "age": seq}


def pct(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    return values[min(len(values) - 1, round(q * (len(values) - 1)))]


async def close_all(subscribers: list[Any]) -> None:
    for sub in subscribers:
        sub.close()
    await asyncio.sleep(0.3)


async def warm_up(trigger: Trigger, query: str = "topic=1") -> None:
    """One untracked change before measuring: the first request's one-time costs (C's
    Basic login hashes its password once, then it is cached; lazy imports) stay out of
    the figures."""
    await trigger.post(record(1, next_seq()), query)
    await asyncio.sleep(0.2)


async def one_change_at_a_time(
    trigger: Trigger, subs: list[Any], tracker: Tracker, query: str, changes: int, interval: float
) -> dict[str, Any]:
    """After a warm-up, ``changes`` changes of record 1, each waited for until all of
    ``subs`` got it (at most 10 s) and ``interval`` seconds apart; then close ``trigger``
    and ``subs``. Latency p50/p99 and lost frames. Shared by every arm's latency scenario."""
    await warm_up(trigger, query)
    for _ in range(changes):
        began = time.perf_counter()
        seq = next_seq()
        waiter = tracker.start(seq)
        await trigger.post(record(1, seq), query)
        try:
            await asyncio.wait_for(waiter, 10)
        except asyncio.TimeoutError:  # on 3.10 not the builtin TimeoutError
            pass
        await asyncio.sleep(max(0.0, interval - (time.perf_counter() - began)))
    await asyncio.sleep(0.5)
    trigger.close()
    await close_all(subs)
    lat = tracker.latencies_ms()
    return {"p50_ms": pct(lat, 0.5), "p99_ms": pct(lat, 0.99), "lost": tracker.lost()}


async def scenario_latency(arm: Arm, server: Server, n_subs: int, changes: int, interval: float) -> dict[str, Any]:
    tracker = Tracker(expected=n_subs)
    subs = await subscribe(server.port, [arm.ws.format(rec=1)] * n_subs, tracker.on_seq)
    await asyncio.sleep(0.5)
    trigger = Trigger(server.port, arm.trigger, arm.trigger_headers)
    return await one_change_at_a_time(trigger, subs, tracker, "topic=1", changes, interval)


async def saturate(
    server: Any,
    subs: list[Any],
    tracker: Tracker,
    trigger_spec: str,
    query: str,
    duration: float,
    window: int,
    headers: str = "",
) -> dict[str, Any]:
    """Save record 1 as fast as ``subs`` take it (``window`` changes in flight) for
    ``duration`` seconds, then close ``subs``: deliveries per second, server and client
    CPU. Shared by every arm's fan-out capacity scenario."""
    trigger = Trigger(server.port, trigger_spec, headers)
    await warm_up(trigger, query)
    outstanding = asyncio.Semaphore(window)
    cpu0, wall0, client0 = server.cpu_seconds(), time.perf_counter(), time.process_time()
    pending: list[asyncio.Future[None]] = []
    while time.perf_counter() - wall0 < duration:
        await outstanding.acquire()
        seq = next_seq()
        waiter = tracker.start(seq)
        waiter.add_done_callback(lambda _: outstanding.release())
        pending.append(waiter)
        await trigger.post(record(1, seq), query)
    await asyncio.wait(pending, timeout=15)
    wall = time.perf_counter() - wall0
    cpu, client = server.cpu_seconds() - cpu0, time.process_time() - client0
    trigger.close()
    await close_all(subs)
    return {
        "deliveries_per_s": tracker.delivered / wall,
        "server_us_per_delivery": cpu / max(tracker.delivered, 1) * 1e6,
        "server_cpu_share": cpu / wall,
        "client_cpu_share": client / wall,
        "lost": tracker.lost(),
    }


async def scenario_capacity(arm: Arm, server: Server, n_subs: int, duration: float, window: int) -> dict[str, Any]:
    tracker = Tracker(expected=n_subs)
    subs = await subscribe(server.port, [arm.ws.format(rec=1)] * n_subs, tracker.on_seq)
    await asyncio.sleep(0.5)
    return await saturate(server, subs, tracker, arm.trigger, "topic=1", duration, window, arm.trigger_headers)


async def scenario_fixed_rate(arm: Arm, server: Server, n_subs: int, rate: float, duration: float) -> dict[str, Any]:
    """``rate`` changes a second of one record to ``n_subs`` subscribers, each posted at its
    scheduled time: server CPU per delivery with every arm doing the same work at the same
    pace (at saturation the faster arm also keeps its client busier, and a busy client
    makes each socket write cheaper for the server), and the latency at that pace."""
    tracker = Tracker(expected=n_subs)
    subs = await subscribe(server.port, [arm.ws.format(rec=1)] * n_subs, tracker.on_seq)
    await asyncio.sleep(0.5)
    trigger = Trigger(server.port, arm.trigger, arm.trigger_headers)
    await warm_up(trigger)
    n = int(rate * duration)
    cpu0, wall0, client0 = server.cpu_seconds(), time.perf_counter(), time.process_time()
    for i in range(n):
        delay = wall0 + i / rate - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        seq = next_seq()
        tracker.start(seq)
        await trigger.post(record(1, seq), "topic=1")
    await asyncio.sleep(1.0)
    cpu, client, wall = server.cpu_seconds() - cpu0, time.process_time() - client0, time.perf_counter() - wall0
    trigger.close()
    await close_all(subs)
    lat = tracker.latencies_ms()
    return {
        "deliveries_per_s": tracker.delivered / wall,
        "server_us_per_delivery": cpu / max(tracker.delivered, 1) * 1e6,
        "client_cpu_share": client / wall,
        "p50_ms": pct(lat, 0.5),
        "p99_ms": pct(lat, 0.99),
        "lost": tracker.lost(),
    }


async def scenario_many_records(arm: Arm, server: Server, records: int, rate: float, duration: float) -> dict[str, Any]:
    """Changes to ``records`` records at ``rate`` per second, each watched by two record
    subscribers and the collection. The changes are posted on ``TRIGGERS`` connections
    at once (each change at its scheduled time), so one slow request does not hold back
    the next: the achieved rate is what the server sustains."""
    tracker = Tracker(expected=3)  # two subscribers of the record, one of the collection
    paths = [arm.ws.format(rec=rec) for rec in range(1, records + 1) for _ in range(2)] + [arm.collection]
    subs = await subscribe(server.port, paths, tracker.on_seq)
    await asyncio.sleep(1.0)
    triggers = [Trigger(server.port, arm.trigger, arm.trigger_headers) for _ in range(TRIGGERS)]
    for trigger in triggers:
        await warm_up(trigger, "topic=1&also=all")
    cpu0, wall0 = server.cpu_seconds(), time.perf_counter()
    n = int(rate * duration)

    async def post_every(k: int) -> None:
        for i in range(k, n, TRIGGERS):
            delay = wall0 + i / rate - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            rec = i % records + 1
            seq = next_seq()
            tracker.start(seq)
            await triggers[k].post(record(rec, seq), f"topic={rec}&also=all")

    await asyncio.gather(*(post_every(k) for k in range(TRIGGERS)))
    achieved = n / (time.perf_counter() - wall0)
    await asyncio.sleep(2.0)
    cpu = server.cpu_seconds() - cpu0
    for trigger in triggers:
        trigger.close()
    await close_all(subs)
    lat = tracker.latencies_ms()
    return {
        "saves_per_s": achieved,
        "p50_ms": pct(lat, 0.5),
        "p99_ms": pct(lat, 0.99),
        "server_us_per_update": cpu / max(n, 1) * 1e6,
        "server_us_per_delivery": cpu / max(tracker.delivered, 1) * 1e6,
        "lost": tracker.lost(),
    }


async def scenario_idle_memory(arm: Arm, server: Server, n: int) -> dict[str, Any]:
    # Warm up first: lazy imports, thread pools and layer connections are paid once per
    # process, not per connection.
    await close_all(await subscribe(server.port, [arm.ws.format(rec=1)] * 20, lambda seq, now: None))
    await asyncio.sleep(0.5)
    before = server.rss_kib()
    subs = await subscribe(server.port, [arm.ws.format(rec=1)] * n, lambda seq, now: None)
    await asyncio.sleep(2.0)
    after = server.rss_kib()
    await close_all(subs)
    return {"kib_per_connection": (after - before) / n}


def prepare_database(env: dict[str, str]) -> None:
    subprocess.run([sys.executable, "-m", "django", "migrate", "--verbosity", "0"], cwd=ROOT, env=env, check=True)
    code = (
        "from project.dogs.models import Dog;"
        "Dog.objects.bulk_create([Dog(id=i, name=f'Dog {i}', breed='Beagle', age=0) for i in range(1, 1001)],"
        " ignore_conflicts=True);"
        "from django.contrib.auth import get_user_model;"
        f"get_user_model().objects.filter(username={USERNAME!r}).exists() or "
        f"get_user_model().objects.create_superuser({USERNAME!r}, password={PASSWORD!r})"
    )
    subprocess.run([sys.executable, "-c", f"import django; django.setup(); {code}"], cwd=ROOT, env=env, check=True)


def redis_url() -> str | None:
    url = os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/0")
    try:
        import redis

        redis.Redis.from_url(url, socket_connect_timeout=1).ping()
        return url
    except Exception:
        return None


def postgres_url() -> str | None:
    """A PostgreSQL database of the benchmark's own (made if missing), or None."""
    url = os.environ.get("BENCH_POSTGRES_URL", "postgres://postgres@127.0.0.1:5432/test")
    try:
        import psycopg

        with psycopg.connect(url.replace("postgres://", "postgresql://", 1), connect_timeout=2, autocommit=True) as db:
            if not db.execute("SELECT 1 FROM pg_database WHERE datname = 'harper_bench'").fetchone():
                db.execute("CREATE DATABASE harper_bench")
        return url.rsplit("/", 1)[0] + "/harper_bench"
    except Exception:
        return None


#: Layers that run only the scenarios that write to the database (the others do not
#: depend on it): the in-memory channel layer with PostgreSQL instead of SQLite.
DATABASE_ONLY = "in-memory, PostgreSQL"


def scenarios(quick: bool) -> list[tuple[str, Any]]:
    scale = 0.5 if quick else 1.0
    return [
        ("latency, 1 subscriber", lambda a, s: scenario_latency(a, s, 1, int(20 * scale), 0.2)),
        ("latency, 100 subscribers", lambda a, s: scenario_latency(a, s, 100, int(20 * scale), 0.2)),
        ("latency, 1000 subscribers, 1 change/s", lambda a, s: scenario_latency(a, s, 1000, int(15 * scale), 1.0)),
        ("fan-out capacity, 1000 subscribers", lambda a, s: scenario_capacity(a, s, 1000, 5 * scale, 4)),
        (
            "fan-out at 20 changes/s, 1000 subscribers",
            lambda a, s: scenario_fixed_rate(a, s, 1000, 20, 5 * scale),
        ),
        (
            "1000 records x 2 + 1 collection, 300 saves/s",
            lambda a, s: scenario_many_records(a, s, 1000, 300, 4 * scale),
        ),
        ("idle memory, 1k connections", lambda a, s: scenario_idle_memory(a, s, 1000)),
        ("idle memory, 5k connections", lambda a, s: scenario_idle_memory(a, s, 5000)),
    ]


def versions() -> str:
    from importlib.metadata import version

    names = ["Django", "channels", "channels-redis", "uvicorn", "websockets", "uvloop", "daphne"]
    return ", ".join(f"{name} {version(name)}" for name in names) + f", Python {platform.python_version()}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="a shorter run")
    parser.add_argument("--no-write", action="store_true", help="print only; leave RESULTS.md alone")
    parser.add_argument("--only", default="", help="run only the scenarios whose name contains this text")
    parser.add_argument(
        "--layers",
        default="memory,redis,postgresql",
        help="comma-separated: memory, redis (pub/sub), redis-core, postgresql (in-memory layer, the many-records"
        " scenario on PostgreSQL) (default: %(default)s)",
    )
    parser.add_argument("--output", default="benchmarks/RESULTS.md", help="where to write the report")
    parser.add_argument("--formats", action="store_true", help="add the MessagePack and CBOR table (in-memory layer)")
    args = parser.parse_args()
    import resource

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, min(hard, 65536)), hard))
    if hasattr(os, "sched_setaffinity") and os.cpu_count() and os.cpu_count() > 1:
        os.sched_setaffinity(0, {CLIENT_CORE})
    workdir = Path(tempfile.mkdtemp(prefix="harper-bench-"))
    base_env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "benchmarks.settings",
        "BENCH_DIR": str(workdir),
        "BENCH_PREFIX": f"bench-{workdir.name}",  # Redis keys of this run only
    }
    base_env.pop("REDIS_URL", None)
    prepare_database(base_env)
    layers = {}
    url = redis_url()
    for name in args.layers.split(","):
        if name == "memory":
            layers["in-memory"] = base_env
        elif name != "postgresql" and url is None:
            print(f"Redis is not answering: layer {name!r} is left out of this run.", file=sys.stderr)
        elif name == "redis":
            layers["redis (pub/sub)"] = {**base_env, "REDIS_URL": url}
        elif name == "postgresql":
            pg = postgres_url()
            if pg is None:
                print("PostgreSQL is not answering: it is left out of this run.", file=sys.stderr)
            else:
                layers[DATABASE_ONLY] = {**base_env, "DATABASE_URL": pg}
                prepare_database(layers[DATABASE_ONLY])
        elif name == "redis-core":
            layers["redis (core)"] = {**base_env, "REDIS_URL": url, "BENCH_REDIS_LAYER": "core"}
        else:
            parser.error(f"unknown layer {name!r}")

    started = time.monotonic()
    results: dict[tuple[str, str, str], dict[str, Any]] = {}
    for scenario_name, run in scenarios(args.quick):
        if args.only not in scenario_name:
            continue
        for layer_name, env in layers.items():
            if layer_name == DATABASE_ONLY and not scenario_name.startswith("1000 records"):
                continue
            for arm in ARMS:  # interleaved: each scenario runs A, B, C back to back
                server = Server(arm, env)
                try:
                    result = asyncio.run(run(arm, server))
                finally:
                    server.stop()
                results[(scenario_name, layer_name, arm.name)] = result
                print(f"{scenario_name:48} {layer_name:16} {arm.name:20} {json.dumps(result, default=round)}")
    sse_results = sse.run({k: v for k, v in layers.items() if k != DATABASE_ONLY}, args.quick, args.only)
    save_results = {}
    for layer_name, env in layers.items():
        output = subprocess.run(
            [sys.executable, "-m", "benchmarks.save_overhead"], cwd=ROOT, env=env, capture_output=True, text=True
        )
        save_results[layer_name] = json.loads(output.stdout.strip().splitlines()[-1])
        print(f"save() overhead {layer_name:16} {save_results[layer_name]}")
    handshake_rows = []
    if args.only in "handshakes":  # the handshake rows (benchmarks/handshakes.py), on the in-memory layer
        from benchmarks import handshakes

        handshake_rows = handshakes.measure(base_env, args.quick)
    command = " ".join(["python -m benchmarks.run", *sys.argv[1:]])
    report = render(results, save_results, layers, time.monotonic() - started, command) + sse.render(sse_results)
    if args.formats:
        from benchmarks import binary_formats

        report += "\n" + binary_formats.run(args.quick, base_env)
    if handshake_rows:
        report += "\n" + handshakes.markdown(handshake_rows)
    print(report)
    if not args.no_write:
        (ROOT / args.output).write_text(report)
        print(f"written to {args.output}")
    shutil.rmtree(workdir, ignore_errors=True)


def render(results, save_results, layers, seconds, command) -> str:
    from benchmarks.report import render_report

    return render_report(results, save_results, list(layers), [arm.name for arm in ARMS], seconds, command, versions())


if __name__ == "__main__":
    main()
