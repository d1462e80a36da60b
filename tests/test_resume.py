"""Nothing missed: resuming with ?since=, Harper's ?previousCount= and ?omitCurrent= on
the WebSocket path, and catch-up from the change log when a broadcast was lost."""

from __future__ import annotations

import random
import threading

import pytest
from django.test import override_settings

from harper_resources import broadcast, changelog, protocol
from harper_resources.models import Change
from project.dogs.models import Dog
from tests.conftest import db

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("layer")]


async def test_a_collection_resumed_with_since_gets_each_changed_records_final_state_and_nothing_else(ws):
    dogs = [await db(Dog.objects.create)(name=f"Dog {n}", age=0) for n in range(13)]
    client = await ws("/dog/")
    first = [await client.receive() for _ in range(13)]
    since = max(frame["version"] for frame in first)
    await client.leave()

    rng = random.Random(7)
    changed, deleted = set(), set()

    def hundred_changes():
        for _ in range(100):
            dog = rng.choice([d for d in dogs[:10] if d.pk not in deleted])  # the last 3 stay as they are
            if rng.random() < 0.05 and len(deleted) < 3:
                Dog.objects.get(pk=dog.pk).delete()
                deleted.add(dog.pk)
            else:
                dog.age += 1
                dog.save()
                changed.add(dog.pk)
        changed.difference_update(deleted)

    await db(hundred_changes)()
    unchanged = {dog.pk for dog in dogs} - changed - deleted
    assert unchanged, "the scenario leaves some dogs alone"
    resumed = await ws(f"/dog/?since={since!r}")
    frames = await resumed.until_quiet()
    assert {f["id"] for f in frames if f["type"] == "put"} == changed
    assert {f["id"] for f in frames if f["type"] == "delete"} == deleted
    assert len(frames) == len(changed) + len(deleted), "one frame per changed record"
    assert [f["version"] for f in frames] == sorted(f["version"] for f in frames), "oldest first"
    rows = {dog.pk: dog.age for dog in await db(lambda: list(Dog.objects.filter(pk__in=changed)))()}
    assert {f["id"]: f["value"]["age"] for f in frames if f["type"] == "put"} == rows
    # Then live, as without since.
    survivor = next(dog for dog in dogs if dog.pk in unchanged)
    survivor.name = "Live again"
    await db(survivor.save)()
    assert (await resumed.receive())["value"]["name"] == "Live again"


async def test_a_record_resumed_with_since_gets_its_current_state_only_if_it_changed(ws):
    dog = await db(Dog.objects.create)(name="Rex", age=1)
    first = await (await ws(f"/dog/{dog.pk}")).receive()
    unchanged = await ws(f"/dog/{dog.pk}?since={first['version']!r}")
    assert await unchanged.nothing(timeout=0.5)
    for age in (2, 3):
        dog.age = age
        await db(dog.save)()
    assert [(await unchanged.receive())["value"]["age"] for _ in range(2)] == [2, 3]
    resumed = await ws(f"/dog/{dog.pk}?since={first['version']!r}")
    frames = await resumed.until_quiet()
    assert [(f["type"], f["value"]["age"]) for f in frames] == [("put", 3)]
    pk = dog.pk
    await db(dog.delete)()
    after_delete = await ws(f"/dog/{pk}?since={frames[0]['version']!r}")
    assert [f["type"] for f in await after_delete.until_quiet()] == ["delete"]


async def test_since_older_than_the_log_keeps_gets_a_reset_then_the_full_dump(ws):
    old = await db(Dog.objects.create)(name="Old", age=1)
    since = (await (await ws(f"/dog/{old.pk}")).receive())["version"]
    old.age = 2
    await db(old.save)()
    with override_settings(HARPER_RESOURCES_LOG_RETENTION=0):
        removed = await db(changelog.prune)("default", protocol.now_ms() + 1)
    assert removed >= 2
    client = await ws(f"/dog/?since={since!r}")
    reset = await client.receive()
    assert reset["type"] == "reset" and reset["version"] > since
    dump = await client.until_quiet()
    assert [(f["type"], f["id"], f["value"]["age"]) for f in dump] == [("put", old.pk, 2)]


async def test_previous_count_gives_the_last_changes_oldest_first_and_no_extra_first_put(ws):
    dog = await db(Dog.objects.create)(name="Rex", age=0)
    for age in range(1, 6):
        dog.age = age
        await db(dog.save)()
    client = await ws(f"/dog/{dog.pk}?previousCount=3")
    frames = await client.until_quiet()
    assert [(f["type"], f["value"]["age"]) for f in frames] == [("put", 3), ("put", 4), ("put", 5)]
    assert set(frames[0]) == {"id", "localTime", "value", "version", "type"}, "clean frames"
    dog.age = 6
    await db(dog.save)()
    assert (await client.receive())["value"]["age"] == 6


async def test_omit_current_sends_no_first_frame_and_then_every_change(ws):
    dog = await db(Dog.objects.create)(name="Rex", age=0)
    client = await ws(f"/dog/{dog.pk}?omitCurrent=true")
    assert await client.nothing(timeout=0.5)
    dog.age = 1
    await db(dog.save)()
    assert (await client.receive())["value"]["age"] == 1
    collection = await ws("/dog/?omitCurrent=true")
    assert await collection.nothing(timeout=0.5), await collection.receive()


@pytest.mark.parametrize("query", ["since=abc", "since=nan", "previousCount=0", "previousCount=x", "omitCurrent=maybe"])
async def test_a_bad_subscription_option_closes_with_4400(ws, query):
    client = await ws(f"/dog/1?{query}")
    assert await client.closed_with() == 4400


@override_settings(HARPER_RESOURCES_REPLAY_INTERVAL=0.2)
async def test_a_change_whose_broadcast_was_lost_arrives_from_the_change_log(ws, monkeypatch):
    dog = await db(Dog.objects.create)(name="Rex", age=1)
    client = await ws(f"/dog/{dog.pk}")
    await client.receive()
    monkeypatch.setattr(broadcast, "submit", lambda groups, frame: None)  # the layer never gets it
    dog.age = 2
    await db(dog.save)()
    monkeypatch.undo()
    frame = await client.receive(timeout=3)
    assert frame["value"]["age"] == 2
    assert await client.nothing(timeout=0.6), "a replay is sent once"


@override_settings(HARPER_RESOURCES_REPLAY_INTERVAL=0.2)
async def test_a_broadcast_lost_while_the_catch_up_is_starting_still_arrives(ws, monkeypatch):
    """The hub's catch-up finds where to start in a thread: a change committed (and its
    broadcast lost) before that read returns must not be passed over."""
    dog = await db(Dog.objects.create)(name="Rex", age=1)
    saved = threading.Event()
    start_at = changelog.newest_id_before

    def slow_start(using, version):
        assert saved.wait(5), "the test never saved"
        return start_at(using, version)

    monkeypatch.setattr(changelog, "newest_id_before", slow_start)
    client = await ws(f"/dog/{dog.pk}")  # the first listener: the hub starts its catch-up
    await client.receive()
    monkeypatch.setattr(broadcast, "submit", lambda groups, frame: None)  # the layer never gets it
    dog.age = 2
    await db(dog.save)()
    saved.set()
    frame = await client.receive(timeout=3)
    assert frame["value"]["age"] == 2
    assert await client.nothing(timeout=0.6), "a replay is sent once"


@override_settings(HARPER_RESOURCES_REPLAY_INTERVAL=0.2)
async def test_a_change_delivered_normally_is_not_sent_again_by_the_replay(ws):
    dog = await db(Dog.objects.create)(name="Rex", age=1)
    client = await ws(f"/dog/{dog.pk}")
    await client.receive()
    dog.age = 2
    await db(dog.save)()
    assert (await client.receive())["value"]["age"] == 2
    assert await client.nothing(timeout=0.8)


def test_pruning_keeps_the_newest_changes_and_records_the_horizon():
    dog = Dog.objects.create(name="Rex", age=0)
    for age in range(1, 10):
        dog.age = age
        dog.save()
    assert Change.objects.count() == 10
    with override_settings(HARPER_RESOURCES_LOG_MAX_CHANGES=4):
        assert changelog.prune("default") == 6
    kept = list(Change.objects.order_by("version").values_list("version", flat=True))
    assert len(kept) == 4 and changelog.horizon("default") < kept[0]
