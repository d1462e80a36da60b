"""A connection task cancelled at any await point (daphne cancels the task of a client
that left over 10 s ago, and every task at shutdown) still cleans up, then stays cancelled."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from harper_resources import hub
from tests import resources
from tests.conftest import use_layers

pytestmark = pytest.mark.django_db(transaction=True)

CLOSED = ["async close", "sync close", "task cancelled"]


async def until(condition: Any, timeout: float = 3) -> None:
    for _ in range(int(timeout / 0.01)):
        if condition():
            return
        await asyncio.sleep(0.01)
    raise AssertionError("timed out")


async def connect(resource: type[resources.Resource]) -> tuple[asyncio.Task[None], list[dict[str, Any]]]:
    """Run ``resource`` on one connection with a client that connects and then waits."""
    client: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
    client.put_nowait({"type": "websocket.connect"})
    sent: list[dict[str, Any]] = []

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    scope = {"type": "websocket", "path": "/x/1", "url_route": {"kwargs": {"id": "1"}}}
    return asyncio.ensure_future(resource.as_asgi()(scope, client.get, send)), sent


async def assert_cleaned_up(task: asyncio.Task[None], closed: list[str]) -> None:
    with pytest.raises(asyncio.CancelledError):
        await task
    await until(lambda: hub.running_hubs() == [])
    await asyncio.sleep(0.05)  # an async close callback runs as a task of its own
    assert sorted(resources.events) == closed, "close callbacks ran once and the stream's task was cancelled"


@pytest.fixture(autouse=True)
def no_events() -> None:
    resources.events.clear()


async def test_a_connection_cancelled_while_connect_waits_leaves_the_group_and_runs_close_callbacks():
    task, sent = await connect(resources.WaitsInConnect)
    await until(lambda: "connect waits" in resources.events)
    resources.events.clear()
    task.cancel()
    await assert_cleaned_up(task, CLOSED)
    assert sent == []


async def test_a_connection_cancelled_while_its_layer_join_waits_leaves_the_group_and_runs_close_callbacks():
    with use_layers({"default": {"BACKEND": "tests.layers.MembershipLayer"}}):
        task, sent = await connect(resources.CloseCallbacks)
        await until(lambda: hub.running_hubs() != [])
        await asyncio.sleep(0.05)  # the join takes 0.2 s
        task.cancel()
        await assert_cleaned_up(task, CLOSED)
        assert sent == []


async def test_a_connection_cancelled_after_accept_and_again_while_it_cleans_up_still_cleans_up():
    task, sent = await connect(resources.CloseCallbacks)
    await until(lambda: any(message["type"] == "websocket.accept" for message in sent))
    task.cancel()
    await asyncio.sleep(0)  # the connection is now in its clean-up, awaiting its writer
    task.cancel()
    await assert_cleaned_up(task, CLOSED)
