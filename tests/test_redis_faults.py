"""Redis-specific delivery: group expiry, a Redis outage, layer capacity."""

from __future__ import annotations

import asyncio
import json
import logging
import shutil
import signal
import socket
import struct
import subprocess
import sys
import time

import pytest
from websockets.sync.client import connect

from harper_resources import metrics
from project.dogs.models import Dog
from tests.conftest import db, missing, redis_layer_settings, use_layers
from tests.live import AdminClient, DemoServer, free_port


@pytest.mark.django_db(transaction=True)
async def test_a_connection_older_than_the_group_expiry_keeps_receiving(ws, redis_service):
    with use_layers(redis_layer_settings("redis", group_expiry=2)):
        dog = await db(Dog.objects.create)(name="Rex")
        client = await ws(f"/dog/{dog.pk}")
        await client.receive()
        await asyncio.sleep(4.5)  # more than twice the expiry
        dog.age = 7
        await db(dog.save)()
        assert (await client.receive(timeout=3))["value"]["age"] == 7


class OwnRedis:
    """A redis-server of the test's own on a free port, to stop and start at will."""

    def __init__(self):
        if not shutil.which("redis-server"):
            missing("redis-server")
        self.port = free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.process = None

    def start(self):
        self.process = subprocess.Popen(
            ["redis-server", "--bind", "127.0.0.1", "--port", str(self.port), "--save", "", "--appendonly", "no"],
            stdout=subprocess.DEVNULL,
        )
        import redis

        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                if redis.Redis.from_url(self.url).ping():
                    return self
            except redis.RedisError:
                time.sleep(0.05)
        raise RuntimeError("redis-server did not start")

    def stop(self):
        if self.process and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(timeout=10)


def next_record(sock, timeout=5):
    deadline = time.monotonic() + timeout
    while True:
        frame = json.loads(sock.recv(timeout=max(deadline - time.monotonic(), 0.01)))
        if "status" not in frame:
            return frame


@pytest.mark.parametrize("layer", ["pubsub", "core"])
def test_during_a_redis_outage_saves_succeed_and_changes_flow_again_when_it_returns(tmp_path, layer):
    redis = OwnRedis().start()
    server = DemoServer(tmp_path, env={"REDIS_URL": redis.url, "REDIS_LAYER": layer}).start()
    try:
        admin = AdminClient(server.url)
        pk = admin.add_dog("Rex")
        with connect(server.ws_url + f"/dog/{pk}") as sock:
            assert next_record(sock)["value"]["name"] == "Rex"
            redis.stop()
            admin.change_dog(pk, "Saved while Redis was down")  # raises if the admin failed
            assert "Saved while Redis was down" in admin.get(f"/admin/dogs/dog/{pk}/change/")
            # The socket stays up: the status pulse is local and keeps coming.
            assert "status" in json.loads(sock.recv(timeout=3))
            redis.start()
            deadline = time.monotonic() + 30
            seen = None
            while time.monotonic() < deadline:
                admin.change_dog(pk, "After the outage")
                try:
                    seen = next_record(sock, timeout=2)
                except TimeoutError:
                    continue
                if seen["value"]["name"] == "After the outage":
                    break
            assert seen and seen["value"]["name"] == "After the outage", "changes flow again without a restart"
        with connect(server.ws_url + f"/dog/{pk}") as fresh:
            assert next_record(fresh)["value"]["name"] == "After the outage"
        logs = server.logs()
        assert "group_send failed" in logs or "broadcast failed" in logs, "the failure is logged"
        assert logs.count("group_send failed") < 20, "logged once per interval, not per message"
    finally:
        server.stop()
        redis.stop()


@pytest.mark.django_db(transaction=True)
def test_changes_over_the_broadcast_queue_are_dropped_counted_and_logged_once(caplog, redis_service, monkeypatch):
    monkeypatch.setattr(metrics, "_last_logged", {})  # an earlier test's line must not throttle this one
    with (
        use_layers(redis_layer_settings("redis")),
        caplog.at_level(logging.WARNING, logger="harper_resources"),
    ):
        from harper_resources import broadcast

        sender = broadcast._sender()
        before = metrics.snapshot().get("broadcast_dropped", 0)
        sender.maxsize, saved = 5, sender.maxsize
        try:
            # Stall the sender's loop so the queue cannot drain while we save.
            stall = asyncio.run_coroutine_threadsafe(asyncio.sleep(1), sender._loop)
            sender._loop.call_soon_threadsafe(time.sleep, 0.5)
            for n in range(50):
                Dog.objects.create(name=f"dog {n}")
            stall.result(5)
        finally:
            sender.maxsize = saved
        assert Dog.objects.count() == 50, "every write is kept"
        dropped = metrics.snapshot()["broadcast_dropped"] - before
        assert dropped > 0
        assert caplog.text.count("broadcast queue full") == 1, "logged once per interval"


PUBLISH_FLOOD = """
import harper_resources
from project.dogs.models import Dog
for n in range({n}):
    harper_resources.publish(Dog, 341, {{"n": n, "pad": "x" * 32768}})
dog = Dog.objects.get(pk=341)
dog.age = 99
dog.save()
"""


def rss_kib(pid):
    with open(f"/proc/{pid}/status") as status:
        return next(int(line.split()[1]) for line in status if line.startswith("VmRSS:"))


def test_a_client_that_stops_reading_is_closed_1013_while_a_fast_one_gets_everything(tmp_path, redis_service):
    from tests.live import run_script
    from tests.test_live_security import raw_websocket

    env = {
        "REDIS_URL": redis_service,
        "REDIS_LAYER": "pubsub",
        "REDIS_PREFIX": f"harper-test-{time.monotonic_ns()}",
        # The default queue: the 400 messages arrive as one burst, and with compression off
        # (the documented flags) their 32 KiB each are 32 KiB on the wire too, so the socket
        # buffers take only a few and the fast client's queue holds most of the burst for a
        # moment. The slow client still overflows it (SEND_QUEUE_BYTES: 13 MB > 8 MiB).
    }
    server = DemoServer(tmp_path, env=env, server="uvicorn").start()
    try:
        slow = raw_websocket(server.port, "/dog/341")  # handshake, then never reads
        slow.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        n = 400
        # max_queue=None: the client reads the socket as fast as it can, buffering on its side.
        with connect(server.ws_url + "/dog/341", max_size=None, max_queue=None) as fast:
            assert next_record(fast)["type"] == "put"
            rss_before = rss_kib(server.process.pid)
            started = time.monotonic()
            run_script(PUBLISH_FLOOD.format(n=n), server.env)
            received, put = [], None
            while len(received) < n or put is None:
                frame = next_record(fast, timeout=20)
                if frame["type"] == "put":  # the save may overtake messages: changes go first
                    put = frame
                else:
                    received.append(frame["value"]["n"])
            assert put["value"]["age"] == 99
            assert received == list(range(n)), "the fast client gets every message, in order"
            assert time.monotonic() - started < 20
            growth_mib = (rss_kib(server.process.pid) - rss_before) / 1024
        assert growth_mib < 100, f"server memory grew by {growth_mib:.0f} MiB for one slow client"
        deadline = time.monotonic() + 30
        while "read too slowly" not in server.logs() and time.monotonic() < deadline:
            time.sleep(0.2)
        assert "read too slowly" in server.logs(), "the slow client was closed (1013) and it was logged"
        slow.close()
    finally:
        server.stop()


SAVE_LOOP = """
import time
from project.dogs.models import Dog
dog = Dog.objects.get(pk=341)
deadline = time.monotonic() + {seconds}
n = 0
while time.monotonic() < deadline:
    n += 1
    dog.age = n % 100
    dog.save()
"""


def test_clients_that_vanish_under_uvicorn_while_changes_flow_leave_no_traceback_per_frame(tmp_path, redis_service):
    from tests.live import ROOT
    from tests.test_live_security import raw_websocket

    env = {"REDIS_URL": redis_service, "REDIS_LAYER": "pubsub", "REDIS_PREFIX": f"harper-test-{time.monotonic_ns()}"}
    server = DemoServer(tmp_path, env=env, server="uvicorn").start()
    try:
        clients = [raw_websocket(server.port, "/dog/341") for _ in range(50)]  # they never read
        with connect(server.ws_url + "/dog/341") as watcher:
            first = next_record(watcher)
            saver = subprocess.Popen(
                [sys.executable, "manage.py", "shell", "-c", SAVE_LOOP.format(seconds=3)], cwd=ROOT, env=server.env
            )
            while next_record(watcher, timeout=30) == first:
                pass  # until the saves are flowing
            # The clients leave while the server is busy (stopped, here): when it runs
            # again, changes that arrived meanwhile meet clients that are gone.
            server.process.send_signal(signal.SIGSTOP)
            try:
                for n, sock in enumerate(clients):
                    if n % 2:  # a TCP reset; the others just close, without a WebSocket close handshake
                        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                    sock.close()
                time.sleep(1)
            finally:
                server.process.send_signal(signal.SIGCONT)
            assert saver.wait(timeout=60) == 0
        with connect(server.ws_url + "/dog/341") as fresh:
            assert next_record(fresh)["type"] == "put", "the server still serves"
        logs = server.logs()
        assert "ClientDisconnected" not in logs, "a send to a departed client is a disconnect, not an error"
        assert logs.count("Traceback") <= 2, logs[-3000:]
    finally:
        server.stop()
