"""Commit order across real processes: a later commit from an idle process overtakes an
earlier one still queued in a busy process, and subscribers still end on the stored row.

A writer commits one transaction of 9,000 saves whose last sets dog 341's age to 1; a
second process then sets it to 2 while the first is still handing its 18,000 events to
Redis. Run on both Redis layers, on SQLite and on PostgreSQL."""

from __future__ import annotations

import json
import queue
import subprocess
import sys
import threading
import time
import uuid
from typing import Any

import pytest
from websockets.sync.client import connect

from tests.conftest import missing
from tests.live import ROOT, DemoServer
from tests.test_multiprocess import forget_prefix, own_prefix
from tests.test_postgresql import POSTGRES_URL, postgres_available

BUSY_WRITER = """
import sys
from django.db import transaction
from project.dogs.models import Dog
with transaction.atomic():
    others = [Dog.objects.get(pk=342), Dog.objects.get(pk=343)]
    for n in range(8999):
        other = others[n % 2]
        other.age = n
        other.save(update_fields=["age"])
    dog = Dog.objects.get(pk=341)
    dog.age = 1
    dog.save()
print("committed", flush=True)
"""

IDLE_WRITER = """
import os, time
from project.dogs.models import Dog
dog = Dog.objects.get(pk=341)
print("ready", flush=True)
while not os.path.exists({go!r}):
    time.sleep(0.005)
dog = Dog.objects.get(pk=341)
dog.age = 2
dog.save()
print("saved", flush=True)
"""


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request, tmp_path):
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'db.sqlite3'}"
        return
    if not postgres_available():
        missing(f"PostgreSQL at {POSTGRES_URL}")
    import psycopg

    name = f"harper_order_{uuid.uuid4().hex[:8]}"
    admin_url = POSTGRES_URL.replace("postgres://", "postgresql://")
    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(f"CREATE DATABASE {name}")
    yield POSTGRES_URL.rsplit("/", 1)[0] + f"/{name}"
    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


@pytest.fixture(params=["pubsub", "core"])
def server(request, tmp_path, redis_service, database_url):
    env = {
        "REDIS_URL": redis_service,
        "REDIS_LAYER": request.param,
        "REDIS_PREFIX": own_prefix(),
        "DATABASE_URL": database_url,
    }
    demo = DemoServer(tmp_path, env=env).start()
    yield demo
    demo.stop()
    forget_prefix(redis_service, env["REDIS_PREFIX"])


def script(code: str, env: dict[str, str]) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "manage.py", "shell", "-c", code],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


#: Each script's output lines, read by a thread of their own (``_lines_of``).
_output: dict[int, queue.Queue[str | None]] = {}


def _lines_of(process: subprocess.Popen[str]) -> queue.Queue[str | None]:
    """The script's stdout lines as they come (None at its end). A thread reads them:
    ``select`` on the pipe misses a line the text buffer already holds (two lines that
    arrived together), which left a test waiting 60 s for a line it had been sent."""
    lines = _output.get(process.pid)
    if lines is None:
        lines = _output[process.pid] = queue.Queue()
        assert process.stdout is not None

        def pump(stdout: Any = process.stdout, lines: queue.Queue[str | None] = lines) -> None:
            for text in stdout:
                lines.put(text.strip())
            lines.put(None)

        threading.Thread(target=pump, daemon=True).start()
    return lines


def wait_for_line(process: subprocess.Popen[str], line: str, timeout: float = 60) -> None:
    """Read the script's output until ``line`` (Django's shell prints a line of its own first)."""
    lines = _lines_of(process)
    deadline = time.monotonic() + timeout
    seen: list[str] = []
    while (left := deadline - time.monotonic()) > 0:
        try:
            got = lines.get(timeout=left)
        except queue.Empty:
            break
        if got is None:  # the script ended
            break
        if got == line:
            return
        seen.append(got)
    process.kill()
    process.wait()
    assert process.stderr is not None
    errors = process.stderr.read()
    raise AssertionError(f"expected {line!r}, got {seen!r}: {errors[-3000:]}")


def frames_until_quiet(sock, quiet: float = 3.0, limit: float = 60.0) -> list[dict]:
    """Record frames (the demo's status pulse left out) until none came for ``quiet`` s."""
    frames = []
    deadline = time.monotonic() + limit
    last = time.monotonic()
    while time.monotonic() < deadline:
        try:
            frame = json.loads(sock.recv(timeout=0.5))
        except TimeoutError:
            frame = None
        if frame is not None and "status" not in frame:
            frames.append(frame)
            last = time.monotonic()
        elif time.monotonic() - last > quiet:
            return frames
    raise AssertionError("frames kept coming")


def test_a_later_commit_from_an_idle_process_never_leaves_subscribers_on_the_older_state(server, tmp_path):
    go = tmp_path / "go"
    # Not read while the writers run: room for the pulse frames meanwhile, no pings.
    with connect(server.ws_url + "/dog/341", max_queue=None, ping_interval=None) as watcher:
        first = json.loads(watcher.recv(timeout=10))
        assert first["type"] == "put"
        idle = script(IDLE_WRITER.format(go=str(go)), server.env)
        wait_for_line(idle, "ready")
        busy = script(BUSY_WRITER, server.env)
        try:
            wait_for_line(busy, "committed")
            go.touch()  # the idle process commits age 2 while the busy one still sends
            wait_for_line(idle, "saved")
            assert busy.wait(60) == 0 and idle.wait(60) == 0
        finally:
            for process in (busy, idle):
                if process.poll() is None:
                    process.kill()
        frames = [first, *frames_until_quiet(watcher)]
    with connect(server.ws_url + "/dog/341") as reader:
        stored = json.loads(reader.recv(timeout=10))
    assert stored["value"]["age"] == 2, "the database holds the later commit"
    last = frames[-1]
    assert (last["value"], last["version"]) == (stored["value"], stored["version"]), (
        f"the subscriber ended on {[f['value']['age'] for f in frames]}, the row says age 2"
    )
    versions = [frame["version"] for frame in frames]
    assert versions == sorted(versions), "versions never go back at a subscriber"
