"""Several processes over Redis: real daphne servers, a writer script, the layer itself."""

from __future__ import annotations

import asyncio
import json
import os
import time
import uuid

import pytest
import websockets
from websockets.sync.client import connect

from tests.live import DemoServer, run_script

pytestmark = pytest.mark.usefixtures("redis_service")


def own_prefix():
    """A Redis key prefix no other test or run uses."""
    return f"harper-test-{uuid.uuid4().hex[:8]}"


def forget_prefix(url, prefix):
    """Delete what a test left in Redis (a killed server's memberships last a day)."""
    import redis

    client = redis.Redis.from_url(url)
    for key in client.scan_iter(f"{prefix}*"):
        client.delete(key)


@pytest.fixture(params=["pubsub", "core"])
def redis_env(request, redis_service):
    """Environment of the demo on Redis, with a key prefix of its own."""
    env = {"REDIS_URL": redis_service, "REDIS_LAYER": request.param, "REDIS_PREFIX": own_prefix()}
    yield env
    forget_prefix(redis_service, env["REDIS_PREFIX"])


@pytest.fixture
def two_servers(tmp_path, redis_env):
    first = DemoServer(tmp_path, env=redis_env).start()
    second = DemoServer(tmp_path, env=redis_env).start(prepare=False)
    yield first, second
    first.stop()
    second.stop()


def record_frames(sock, until, timeout=10):
    """Record frames (the pulse left out) until ``until(frames)`` is true."""
    frames = []
    deadline = time.monotonic() + timeout
    while not until(frames):
        frame = json.loads(sock.recv(timeout=max(deadline - time.monotonic(), 0.01)))
        if "status" not in frame:
            frames.append(frame)
    return frames


WRITER = """
from project.dogs.models import Dog
for pk in (341, 342, 343):
    Dog.objects.filter(pk=pk).update(age=0)
for age in range(1, {n} + 1):
    for pk in (341, 342, 343):
        dog = Dog.objects.get(pk=pk)
        dog.age = age
        dog.save(update_fields=["age"])
print("wrote")
"""


def test_a_script_on_another_process_reaches_clients_of_both_servers_in_commit_order(two_servers):
    first, second = two_servers
    n = 100
    with (
        connect(first.ws_url + "/dog/341") as a341,
        connect(second.ws_url + "/dog/341") as b341,
        connect(second.ws_url + "/dog/342") as b342,
        connect(first.ws_url + "/dog/") as collection,
    ):
        for sock in (a341, b341, b342):
            record_frames(sock, lambda frames: len(frames) == 1)
        record_frames(collection, lambda frames: {341, 342, 343} <= {f["id"] for f in frames})
        result = run_script(WRITER.format(n=n), first.env)  # saves 300 times, then exits at once
        assert "wrote" in result.stdout

        def done(pk):
            return lambda frames: any(f["id"] == pk and f["value"]["age"] == n for f in frames)

        for sock, pk in ((a341, 341), (b341, 341), (b342, 342)):
            ages = [f["value"]["age"] for f in record_frames(sock, done(pk))]
            assert ages == list(range(1, n + 1)), f"dog {pk}: every change, in commit order"
        frames = record_frames(collection, lambda frames: all(done(pk)(frames) for pk in (341, 342, 343)))
        for pk in (341, 342, 343):
            assert [f["value"]["age"] for f in frames if f["id"] == pk] == list(range(1, n + 1))


SAVE_AND_EXIT = """
from django.core.management import call_command
call_command("migrate", verbosity=0)
from project.dogs.models import Dog
for n in range(4):
    Dog.objects.create(name=f"dog {n}")
"""


@pytest.mark.parametrize(
    ("kind", "backend"),
    [("core", "channels_redis.core.RedisChannelLayer"), ("pubsub", "channels_redis.pubsub.RedisPubSubChannelLayer")],
)
async def test_a_script_that_exits_right_after_saving_delivers_every_change_to_a_redis_named_by_host(
    redis_service, kind, backend
):
    from django.utils.module_loading import import_string

    # A host name (not an IP address) must be resolved, and at exit, when the flush
    # runs, concurrent.futures no longer takes work: the lookup must not depend on it.
    by_name = redis_service.replace("//127.0.0.1:", "//localhost:")
    prefix = own_prefix()
    layer = import_string(backend)(hosts=[redis_service], prefix=prefix)
    channel = await layer.new_channel()
    await layer.group_add("harper.dogs.dog", channel)
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "project.settings",
        "DATABASE_URL": "sqlite://:memory:",
        "REDIS_URL": by_name,
        "REDIS_LAYER": kind,
        "REDIS_PREFIX": prefix,
    }
    try:
        await asyncio.to_thread(run_script, SAVE_AND_EXIT, env)  # no flush(): the exit flush sends
        names = []
        for _ in range(4):
            message = await asyncio.wait_for(layer.receive(channel), 5)
            names.append(json.loads(message["frame"])["value"]["name"])
        assert names == ["dog 0", "dog 1", "dog 2", "dog 3"]
    finally:
        await layer.group_discard("harper.dogs.dog", channel)
        await layer.flush()
        forget_prefix(redis_service, prefix)


def redis_keys(url, pattern):
    import redis

    return redis.Redis.from_url(url).keys(pattern)


def test_a_thousand_clients_leaving_at_once_leave_no_group_membership_in_redis(tmp_path, redis_service):
    prefix = own_prefix()
    groups = f"{prefix}:group:harper.dogs.dog.*"
    server = DemoServer(tmp_path, env={"REDIS_URL": redis_service, "REDIS_LAYER": "core", "REDIS_PREFIX": prefix})
    server.start()
    try:

        async def crowd():
            sockets = await asyncio.gather(
                *(websockets.connect(f"{server.ws_url}/dog/{10_000 + n}", open_timeout=30) for n in range(1000))
            )
            groups_while_open = len(redis_keys(redis_service, groups))
            await asyncio.gather(*(sock.close() for sock in sockets))
            return groups_while_open

        assert asyncio.run(crowd()) == 1000, "one membership per record group, not per connection"
        deadline = time.monotonic() + 20
        while redis_keys(redis_service, groups) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert redis_keys(redis_service, groups) == []
    finally:
        server.stop()
        forget_prefix(redis_service, prefix)
