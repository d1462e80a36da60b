"""The hub's layer-group membership: a subscription returns only once the layer has it."""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Awaitable, Callable, Iterator
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from harper_resources import hub
from project.dogs.models import Dog
from tests.conftest import db, redis_layer_settings, use_layers
from tests.layers import MembershipLayer

GROUPS = ("a", "b", "c")


class SteppedLayer(MembershipLayer):
    """Each membership call takes its number of event-loop turns from ``turns`` (in a
    cycle), so a drawn example replays the same interleaving every time."""

    def __init__(self, turns: list[int]) -> None:
        super().__init__()
        self.turns = itertools.cycle(turns)

    async def delay(self) -> None:
        for _ in range(next(self.turns)):
            await asyncio.sleep(0)


operations = st.lists(
    st.tuples(st.sampled_from(["subscribe", "unsubscribe"]), st.sampled_from(GROUPS), st.integers(0, 6)),
    max_size=30,
)


@settings(max_examples=300, deadline=None)
@given(ops=operations, turns=st.lists(st.integers(0, 6), min_size=1, max_size=8))
def test_a_returned_subscribe_is_always_in_the_layer_group_and_idle_membership_matches_the_listeners(ops, turns):
    asyncio.run(subscribe_and_unsubscribe(ops, turns))


async def subscribe_and_unsubscribe(ops: list[tuple[str, str, int]], turns: list[int]) -> None:
    loop = asyncio.get_running_loop()
    layer = SteppedLayer(turns)
    the_hub = hub.Hub(loop, layer)
    listeners: dict[str, list[hub.Listener]] = {group: [] for group in GROUPS}

    async def subscribe(group: str, listener: hub.Listener) -> None:
        listeners[group].append(listener)
        try:
            await the_hub.subscribe(group, listener)
        except RuntimeError:
            assert listener not in listeners[group], "only a listener unsubscribed while it waited fails"
            return
        assert group in layer.groups_of(the_hub.channel_name), f"subscribe({group!r}) returned before the join"

    waiting = []
    for action, group, pause in ops:
        if action == "subscribe":

            def listener(frame: Any) -> None:
                pass

            waiting.append(loop.create_task(subscribe(group, listener)))
        elif listeners[group]:
            the_hub.unsubscribe(group, listeners[group].pop(0))
        for _ in range(pause):
            await asyncio.sleep(0)
    await asyncio.gather(*waiting)
    await idle(the_hub)
    wanted = {group for group in GROUPS if listeners[group]}
    assert layer.groups_of(the_hub.channel_name) == wanted
    for group in GROUPS:
        for listener in listeners[group]:
            the_hub.unsubscribe(group, listener)
    await idle(the_hub)
    assert layer.groups_of(the_hub.channel_name) == set()


async def idle(the_hub: hub.Hub) -> None:
    """Wait until the hub's membership worker has nothing left to do."""
    for _ in range(10_000):
        if the_hub._worker is None:
            return
        await asyncio.sleep(0)
    raise AssertionError("the membership worker never finished")


def slowed(call: Callable[[str, str], Awaitable[None]]) -> Callable[[str, str], Awaitable[None]]:
    async def slow(group: str, channel: str) -> None:
        await asyncio.sleep(0.2)
        await call(group, channel)

    return slow


@pytest.fixture(params=["redis", "redis-pubsub"])
def slow_redis(request: pytest.FixtureRequest, redis_service: str) -> Iterator[None]:
    """A Redis layer whose group_add and group_discard each take 0.2 s more."""
    with use_layers(redis_layer_settings(request.param)):
        layer: Any = hub.channel_layer()
        layer.group_add, layer.group_discard = slowed(layer.group_add), slowed(layer.group_discard)
        yield


@pytest.mark.django_db(transaction=True)
async def test_a_client_that_opens_while_the_last_one_leaves_gets_every_change_after_open(slow_redis, ws):
    dog = await db(Dog.objects.create)(name="Rex")
    leaving = await ws(f"/dog/{dog.pk}")
    assert (await leaving.receive())["value"]["name"] == "Rex"
    await leaving.leave()
    reloaded = await ws(f"/dog/{dog.pk}")  # a page reload: the same record, at once
    assert (await reloaded.receive())["value"]["name"] == "Rex"
    dog.age = 7
    await db(dog.save)()
    assert (await reloaded.receive(timeout=3))["value"]["age"] == 7
