"""The page ends on the database's state: frames carry the stored row and a version in
commit order, and no subscriber gets an older state after a newer one."""

from __future__ import annotations

import asyncio
import threading
import time

import pytest
from asgiref.sync import sync_to_async
from django.db import connection, transaction
from django.db.models import F

from harper_resources import broadcast, metrics, protocol, tables, versions
from harper_resources.models import RecordVersion
from project.dogs.models import Dog
from tests.conftest import db
from tests.resources import SlowNarrowedDogs
from tests.testapp.models import Animal, Cat

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("layer")]


def in_thread(fn):
    """Run ``fn`` in a thread of its own (its own database connection), for writers that
    must not wait behind the thread the communicator tests use."""

    def run(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        finally:
            connection.close()

    return sync_to_async(run, thread_sensitive=False)


async def test_a_broadcast_delayed_after_its_commit_never_overtakes_a_later_commit(ws):
    dog = await db(Dog.objects.create)(name="Rex", age=0)
    client = await ws(f"/dog/{dog.pk}")
    await client.receive()
    committed = threading.Event()

    def first_writer():
        with transaction.atomic():
            # An earlier on_commit hook (a cache purge, a mail) holds up this broadcast.
            transaction.on_commit(lambda: (committed.set(), time.sleep(0.5)))
            Dog.objects.filter(pk=dog.pk).update(name="Rex")
            first = Dog.objects.get(pk=dog.pk)
            first.age = 1
            first.save()

    def second_writer():
        assert committed.wait(5)
        second = Dog.objects.get(pk=dog.pk)
        second.age = 2
        second.save()

    await asyncio.gather(in_thread(first_writer)(), in_thread(second_writer)())
    frames = [await client.receive()]
    while not await client.nothing(timeout=0.8):
        frames.append(await client.receive())
    stored = await db(Dog.objects.get)(pk=dog.pk)
    assert stored.age == 2
    assert frames[-1]["value"]["age"] == 2, f"the last frame is the stored row, got {frames}"
    assert [f["version"] for f in frames] == sorted(f["version"] for f in frames)


async def test_a_save_with_update_fields_on_a_stale_instance_sends_the_stored_row(ws):
    dog = await db(Dog.objects.create)(name="Rex", breed="Beagle", age=3)
    stale = await db(Dog.objects.get)(pk=dog.pk)
    client = await ws(f"/dog/{dog.pk}")
    await client.receive()
    renamed = await db(Dog.objects.get)(pk=dog.pk)
    renamed.name = "Max"
    await db(renamed.save)()
    assert (await client.receive())["value"]["name"] == "Max"
    stale.age = 4
    await db(stale.save)(update_fields=["age"])
    frame = await client.receive()
    assert frame["value"] == {"id": dog.pk, "name": "Max", "breed": "Beagle", "age": 4}


async def test_a_save_with_an_f_expression_sends_the_computed_value(ws):
    dog = await db(Dog.objects.create)(name="Rex", age=3)
    client = await ws(f"/dog/{dog.pk}")
    await client.receive()
    dog.age = F("age") + 1
    await db(dog.save)()
    frame = await client.receive()
    assert frame["value"]["age"] == 4


async def test_a_save_of_an_instance_with_deferred_fields_sends_every_stored_field(ws):
    dog = await db(Dog.objects.create)(name="Rex", breed="Beagle", age=3)
    client = await ws(f"/dog/{dog.pk}")
    await client.receive()
    partial = await db(lambda: Dog.objects.only("age").get(pk=dog.pk))()
    partial.age = 7
    await db(partial.save)()
    frame = await client.receive()
    assert frame["value"] == {"id": dog.pk, "name": "Rex", "breed": "Beagle", "age": 7}


async def test_the_first_put_carries_the_stored_version_of_the_change_that_made_that_state(ws):
    dog = await db(Dog.objects.create)(name="Rex", age=3)
    watching = await ws(f"/dog/{dog.pk}")
    await watching.receive()
    dog.age = 4
    await db(dog.save)()
    change = await watching.receive()
    await asyncio.sleep(0.05)  # a later read must not make a newer-looking version
    joining = await ws(f"/dog/{dog.pk}")
    first = await joining.receive()
    assert first["value"]["age"] == 4
    assert first["version"] == change["version"]
    assert await joining.nothing()


async def test_versions_follow_commit_order_even_when_the_clock_goes_back(ws, monkeypatch):
    dog = await db(Dog.objects.create)(name="Rex", age=0)
    client = await ws(f"/dog/{dog.pk}")
    first = await client.receive()
    clock = iter(range(10_000, 0, -100))
    monkeypatch.setattr(protocol, "now_ms", lambda: float(next(clock)))
    for age in (1, 2, 3):
        dog.age = age
        await db(dog.save)()
    frames = [await client.receive() for _ in range(3)]
    assert [f["value"]["age"] for f in frames] == [1, 2, 3]
    versions_seen = [first["version"], *(f["version"] for f in frames)]
    assert versions_seen == sorted(versions_seen) and len(set(versions_seen)) == 4


async def test_a_delete_committed_while_a_narrowed_stream_reads_its_first_frames_arrives(ws):
    dog = await db(Dog.objects.create)(name="Rex", age=3)
    SlowNarrowedDogs.read_done.clear()
    SlowNarrowedDogs.read_may_finish.clear()
    try:
        client = await ws(f"/slow-narrowed-dog/{dog.pk}")  # open; its first read waits
        assert await in_thread(SlowNarrowedDogs.read_done.wait)(5), "the first read never ran"
        await in_thread(lambda: Dog.objects.get(pk=dog.pk).delete())()
        await asyncio.sleep(0.2)  # the delete's frame reaches the stream while it reads
    finally:
        SlowNarrowedDogs.read_may_finish.set()
    # Generous: the read waits in the thread every handshake shares, behind earlier work.
    put = await client.receive(timeout=10)
    delete = await client.receive(timeout=10)
    assert (put["type"], delete["type"]) == ("put", "delete"), "the client must not keep a deleted dog"
    assert delete["version"] > put["version"]


async def test_a_change_committed_between_the_first_reads_version_and_row_still_arrives(ws, monkeypatch):
    """A record's first read takes its version, then its row, outside a transaction; a
    save that commits between the two shows in the row under the older version, and
    its own frame follows: the page ends on the stored state and version."""
    dog = await db(Dog.objects.create)(name="Rex", age=1)
    read_default = tables.read_default
    saved = []

    def save_meanwhile(model, pk):
        if model is Dog and not saved:
            changed = Dog.objects.get(pk=pk)
            changed.age = 2
            changed.save()
            saved.append(changed)
        return read_default(model, pk)

    monkeypatch.setattr(tables, "read_default", save_meanwhile)
    client = await ws(f"/dog/{dog.pk}")
    first = await client.receive()
    assert saved and first["value"]["age"] == 2, "the row is read after the save committed"
    live = await client.receive()
    assert live["value"]["age"] == 2 and live["version"] > first["version"], "the save's own frame is not stale"
    stored = await db(RecordVersion.objects.get)(table=tables.table_name(Dog), key=str(dog.pk))
    assert live["version"] == stored.version
    assert await client.nothing(), "and nothing after it"


async def test_a_multi_table_child_save_reaches_the_parent_tables_subscribers(ws):
    collection = await ws("/animal/")
    cat = await db(Cat.objects.create)(name="Tom", indoor=True)
    record = await ws(f"/animal/{cat.pk}")
    assert (await record.receive())["value"] == {"id": cat.pk, "name": "Tom"}
    frame = await collection.receive()
    assert frame["type"] == "put" and frame["value"] == {"id": cat.pk, "name": "Tom"}
    cat.name = "Tommy"
    await db(cat.save)()
    assert (await record.receive())["value"] == {"id": cat.pk, "name": "Tommy"}
    assert (await collection.receive())["value"] == {"id": cat.pk, "name": "Tommy"}
    await db(cat.delete)()
    assert (await record.receive())["type"] == "delete"
    assert (await collection.receive())["type"] == "delete"
    assert await db(Animal.objects.count)() == 0


async def test_an_older_state_arriving_late_is_dropped_and_counted(ws):
    dog = await db(Dog.objects.create)(name="Rex", age=1)
    client = await ws(f"/dog/{dog.pk}")
    first = await client.receive()
    from harper_resources.streams import Frame

    groups = broadcast.record_groups("dogs.dog", str(dog.pk))
    older = protocol.put_frame(dog.pk, {"id": dog.pk, "name": "old", "breed": "", "age": 0}, first["version"] - 1)
    before = metrics.snapshot().get("stale_dropped", 0)
    broadcast.submit(groups, Frame(older, groups[1], first["version"] - 1))
    assert await client.nothing(timeout=0.5)
    assert metrics.snapshot().get("stale_dropped", 0) > before


def test_a_failure_to_version_a_change_does_not_break_the_savers_transaction(monkeypatch):
    def broken(using, table, key, deleted=False):
        with connection.cursor() as cursor:
            cursor.execute("SELECT * FROM no_such_table_here")

    monkeypatch.setattr(versions, "assign", broken)
    # As on a connection that never versioned a change (the app's migration not applied).
    monkeypatch.delattr(connection, broadcast._VERSIONS_OK, raising=False)
    with transaction.atomic():
        dog = Dog.objects.create(name="Rex")
        Dog.objects.create(name="Luna")
    assert Dog.objects.filter(pk=dog.pk).exists() and Dog.objects.count() == 2


def test_each_change_stores_its_version_and_a_delete_keeps_a_tombstone():
    dog = Dog.objects.create(name="Rex")
    created = RecordVersion.objects.get(table="dogs.dog", key=str(dog.pk))
    dog.age = 5
    dog.save()
    changed = RecordVersion.objects.get(table="dogs.dog", key=str(dog.pk))
    assert changed.version > created.version and not changed.deleted
    pk = dog.pk
    dog.delete()
    deleted = RecordVersion.objects.get(table="dogs.dog", key=str(pk))
    assert deleted.deleted and deleted.version > changed.version
