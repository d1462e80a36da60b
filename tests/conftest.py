"""Shared fixtures: WebSocket clients on the test routes, and leak checks."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

import pytest
from channels.db import database_sync_to_async
from channels.testing import WebsocketCommunicator

from harper_resources import broadcast, hub, metrics

#: The testing helpers a project enables the same way (tests/test_testing_helpers.py uses them).
pytest_plugins = ["harper_resources.testing"]

#: Set by .ci/run: services and tools the suite needs must be there, not skipped.
REQUIRE_SERVICES = os.environ.get("HARPER_REQUIRE_SERVICES") == "1"


def pytest_ignore_collect(collection_path: Any, config: Any) -> bool | None:
    """tests/test_capture.py needs PostgreSQL: it runs in tests/test_postgresql.py's run."""
    if collection_path.name == "test_capture.py" and not os.environ.get("DATABASE_URL", "").startswith("postgres"):
        return True
    return None


def missing(what: str) -> None:
    """Skip the test because ``what`` is missing, or fail it in CI."""
    if REQUIRE_SERVICES:
        pytest.fail(f"{what} is missing, and HARPER_REQUIRE_SERVICES=1 says it must be there")
    pytest.skip(f"{what} is missing (install or start it to run this test)")


class Client:
    """A WebsocketCommunicator with the reads these tests need."""

    def __init__(self, communicator: WebsocketCommunicator) -> None:
        self.communicator = communicator

    async def receive(self, timeout: float = 2) -> Any:
        """The next frame, decoded from JSON."""
        return json.loads(await self.communicator.receive_from(timeout=timeout))

    async def receive_raw(self, timeout: float = 2) -> dict[str, Any]:
        return await self.communicator.receive_output(timeout=timeout)

    async def nothing(self, timeout: float = 0.3) -> bool:
        """True if no frame arrives within ``timeout``."""
        return await self.communicator.receive_nothing(timeout=timeout)

    async def closed_with(self, timeout: float = 2) -> int:
        """The close code the server sent next (fails on any other output)."""
        message = await self.communicator.receive_output(timeout=timeout)
        assert message["type"] == "websocket.close", message
        return message.get("code", 1000)

    async def send(self, value: Any) -> None:
        await self.communicator.send_json_to(value)

    async def send_text(self, text: str) -> None:
        await self.communicator.send_to(text_data=text)

    async def send_bytes(self, data: bytes) -> None:
        await self.communicator.send_to(bytes_data=data)

    async def until_quiet(self, quiet: float = 0.5) -> list[Any]:
        """Every frame until none arrives for ``quiet`` seconds."""
        frames = []
        while not await self.nothing(timeout=quiet):
            frames.append(await self.receive())
        return frames

    async def leave(self) -> None:
        await self.communicator.disconnect()


@pytest.fixture
async def ws() -> AsyncIterator[Callable[..., Any]]:
    """``await ws("/dog/1", headers=[...])`` opens a client on the test routes (with the
    session and Basic auth middleware) or on ``application=``; all close at the end."""
    from tests.routing import application as test_routes

    opened: list[WebsocketCommunicator] = []

    async def open_client(
        path: str, headers: list[tuple[bytes, bytes]] | None = None, application: Any = test_routes
    ) -> Client:
        communicator = WebsocketCommunicator(application, path, headers=headers)
        opened.append(communicator)
        connected, _ = await communicator.connect(timeout=3)
        assert connected, f"{path} refused the handshake"
        return Client(communicator)

    yield open_client
    for communicator in opened:
        try:
            await communicator.disconnect(timeout=3)
        except (Exception, asyncio.CancelledError):
            # Already ended: a receive that timed out cancels the application, and
            # disconnect() then re-raises that. The other clients are still closed.
            pass
    # Nothing of any connection may outlive it.
    for _ in range(50):
        if not hub.running_hubs():
            break
        await asyncio.sleep(0.01)
    assert hub.running_hubs() == [], "a hub kept listeners after every client left"


@pytest.fixture(autouse=True)
def group_names_checked_on_every_layer(monkeypatch: pytest.MonkeyPatch) -> None:
    """The in-memory path never hands a group name to the channel layer: check each one
    a hub subscribes or delivers to with Channels' own validator, so a name a Redis layer
    would refuse fails the test on every layer, not only on Redis."""
    from channels.layers import BaseChannelLayer

    require_valid = BaseChannelLayer().require_valid_group_name
    subscribe, deliver_locally = hub.Hub.subscribe, hub.deliver_locally

    async def checked_subscribe(self: hub.Hub, group: str, listener: hub.Listener) -> None:
        await subscribe(self, group, listener)
        try:
            require_valid(group)
        except TypeError:
            self.unsubscribe(group, listener)  # as when a layer refuses the join
            raise

    def checked_deliver_locally(group: str, text: str) -> None:
        require_valid(group)
        deliver_locally(group, text)

    monkeypatch.setattr(hub.Hub, "subscribe", checked_subscribe)
    monkeypatch.setattr(hub, "deliver_locally", checked_deliver_locally)


@pytest.fixture(autouse=True)
def log_throttle_reset(monkeypatch: pytest.MonkeyPatch) -> None:
    """Each test starts with no throttled failure reported yet, so the first one it
    causes is logged whatever other tests logged in the last seconds."""
    monkeypatch.setattr(metrics, "_last_logged", {})


def db(fn: Callable[..., Any]) -> Callable[..., Any]:
    """Run an ORM call from async test code: ``await db(Dog.objects.create)(name=...)``.

    Returns once the call's broadcasts reached the channel layer, so a client that
    subscribes afterwards does not also get them as live frames (with Redis they are
    sent from a background thread, a few milliseconds later).
    """

    def call_and_flush(*args: Any, **kwargs: Any) -> Any:
        result = fn(*args, **kwargs)
        assert broadcast.flush(timeout=5)
        return result

    return database_sync_to_async(call_and_flush)


@pytest.fixture(scope="session")
def demo_server(tmp_path_factory):
    """The demo served by daphne in its own process, with its own SQLite database."""
    from tests.live import DemoServer

    server = DemoServer(tmp_path_factory.mktemp("demo")).start()
    yield server
    server.stop()


@pytest.fixture
def admin(demo_server):
    """An admin session on the demo server, over HTTP."""
    from tests.live import AdminClient

    return AdminClient(demo_server.url)


REDIS_URL = os.environ.get("HARPER_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")

REDIS_LAYERS = {
    "redis": "channels_redis.core.RedisChannelLayer",
    "redis-pubsub": "channels_redis.pubsub.RedisPubSubChannelLayer",
}


def redis_available() -> bool:
    import redis

    try:
        return bool(redis.Redis.from_url(REDIS_URL, socket_connect_timeout=1).ping())
    except redis.RedisError:
        return False


def redis_layer_settings(kind: str, **config: Any) -> dict[str, Any]:
    """CHANNEL_LAYERS for a Redis layer with a prefix of its own (no clash with other runs)."""
    import uuid

    return {
        "default": {
            "BACKEND": REDIS_LAYERS[kind],
            "CONFIG": {"hosts": [REDIS_URL], "prefix": f"harper-test-{uuid.uuid4().hex[:8]}", **config},
        }
    }


@contextlib.contextmanager
def use_layers(layers: dict[str, Any]) -> Iterator[None]:
    """Switch CHANNEL_LAYERS for the test, with fresh layer objects before and after."""
    from channels.layers import channel_layers
    from django.test import override_settings

    channel_layers.backends.clear()
    with override_settings(CHANNEL_LAYERS=layers):
        yield
        broadcast.flush(timeout=5)
    channel_layers.backends.clear()


@pytest.fixture
def redis_service() -> str:
    """The Redis URL the tests use; skips (fails in CI) when no Redis answers."""
    if not redis_available():
        missing(f"Redis at {REDIS_URL}")
    return REDIS_URL


@pytest.fixture(params=["memory", "redis", "redis-pubsub"])
def layer(request: pytest.FixtureRequest) -> Iterator[str]:
    """Runs a test once per channel layer: in-memory, Redis, Redis pub/sub."""
    if request.param == "memory":
        yield "memory"
        return
    request.getfixturevalue("redis_service")
    with use_layers(redis_layer_settings(request.param)):
        yield request.param
