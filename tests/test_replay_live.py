"""Changes whose broadcast was lost still arrive, from the change log, without a restart:
Redis stopped while another process saves, and a writer killed right after its commit.
Real daphne servers, real writer processes, both Redis layers."""

from __future__ import annotations

import json
import subprocess
import sys
import time

import pytest
from websockets.sync.client import connect

from tests.live import ROOT, DemoServer, run_script
from tests.test_redis_faults import OwnRedis

pytestmark = pytest.mark.usefixtures("redis_service")

FIFTY_SAVES = """
from project.dogs.models import Dog
for n in range(50):
    dog = Dog.objects.get(pk=(341, 342, 343)[n % 3])
    dog.age = 100 + n
    dog.save()
print("saved", flush=True)
"""

SAVE_AND_DIE = """
import os, signal
from harper_resources import broadcast
broadcast.submit = lambda groups, frame: None  # as if the process died before sending
from project.dogs.models import Dog
dog = Dog.objects.get(pk=341)
dog.age = 77
dog.save()
os.kill(os.getpid(), signal.SIGKILL)
"""


def records_until(sock, done, timeout=15.0):
    """Record frames (the demo's status pulse left out) until ``done(frames)``."""
    frames = []
    deadline = time.monotonic() + timeout
    while not done(frames):
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise AssertionError(f"gave up waiting; got {frames}")
        try:
            frame = json.loads(sock.recv(timeout=min(remaining, 1.0)))
        except TimeoutError:
            continue
        if "status" not in frame:
            frames.append(frame)
    return frames


def last_ages(frames):
    ages = {}
    for frame in frames:
        ages[frame["id"]] = frame["value"]["age"] if frame["type"] == "put" else None
    return ages


@pytest.mark.parametrize("layer", ["pubsub", "core"])
def test_changes_saved_while_redis_is_down_reach_every_subscriber_without_a_restart(tmp_path, layer):
    redis = OwnRedis().start()
    server = DemoServer(tmp_path, env={"REDIS_URL": redis.url, "REDIS_LAYER": layer}).start()
    final = {341: 148, 342: 149, 343: 147}
    try:
        with (
            connect(server.ws_url + "/dog/341", ping_interval=None) as record,
            connect(server.ws_url + "/dog/", ping_interval=None) as collection,
        ):
            records_until(record, lambda frames: len(frames) == 1)
            records_until(collection, lambda frames: {341, 342, 343} <= {f["id"] for f in frames})
            redis.stop()
            env = {**server.env, "HARPER_RESOURCES_EXIT_FLUSH_TIMEOUT": "0.5"}
            assert "saved" in run_script(FIFTY_SAVES, env).stdout
            # Redis is still down: the change log brings them.
            frames = records_until(record, lambda frames: last_ages(frames).get(341) == final[341])
            ages = [f["value"]["age"] for f in frames]
            assert ages == sorted(ages), "versions, and so ages here, never go back"
            records_until(collection, lambda frames: all(last_ages(frames).get(pk) == age for pk, age in final.items()))
            redis.start()
            run_script("from project.dogs.models import Dog\nd = Dog.objects.get(pk=341)\nd.age = 200\nd.save()", env)
            records_until(record, lambda frames: last_ages(frames).get(341) == 200)
    finally:
        server.stop()
        redis.stop()


@pytest.mark.parametrize("layer", ["pubsub", "core"])
def test_a_change_by_a_writer_killed_right_after_its_commit_still_arrives(tmp_path, redis_service, layer):
    from tests.test_multiprocess import forget_prefix, own_prefix

    env = {"REDIS_URL": redis_service, "REDIS_LAYER": layer, "REDIS_PREFIX": own_prefix()}
    server = DemoServer(tmp_path, env=env).start()
    try:
        with connect(server.ws_url + "/dog/341", ping_interval=None) as record:
            records_until(record, lambda frames: len(frames) == 1)
            writer = subprocess.run(
                [sys.executable, "manage.py", "shell", "-c", SAVE_AND_DIE],
                cwd=ROOT,
                env=server.env,
                capture_output=True,
                timeout=60,
            )
            assert writer.returncode == -9, writer.stderr[-2000:]
            frames = records_until(record, lambda frames: last_ages(frames).get(341) == 77, timeout=5)
            assert [f["value"]["age"] for f in frames] == [77], "once, from the change log"
    finally:
        server.stop()
        forget_prefix(redis_service, env["REDIS_PREFIX"])
