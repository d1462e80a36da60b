"""The default stream of a record path (/dog/<id>): first put, changes, delete, re-create."""

from __future__ import annotations

import pytest
from django.db import transaction

from project.dogs.models import Dog
from tests.conftest import db

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("layer")]


async def test_an_existing_record_arrives_first_as_a_put_frame(ws):
    dog = await db(Dog.objects.create)(name="Rex", breed="Beagle", age=3)
    client = await ws(f"/dog/{dog.pk}")
    frame = await client.receive()
    assert frame["type"] == "put"
    assert frame["id"] == dog.pk
    assert frame["value"] == {"id": dog.pk, "name": "Rex", "breed": "Beagle", "age": 3}
    assert isinstance(frame["version"], float) and isinstance(frame["localTime"], float)
    assert list(frame) == ["id", "localTime", "value", "version", "type"]
    assert await client.nothing()


async def test_every_committed_save_arrives_as_a_put_with_the_whole_record(ws):
    dog = await db(Dog.objects.create)(name="Rex", breed="Beagle", age=3)
    client = await ws(f"/dog/{dog.pk}")
    await client.receive()
    dog.age = 4
    await db(dog.save)(update_fields=["age"])
    frame = await client.receive()
    assert frame["type"] == "put"
    assert frame["value"] == {"id": dog.pk, "name": "Rex", "breed": "Beagle", "age": 4}


async def test_a_delete_arrives_and_the_socket_stays_open_for_a_re_create(ws):
    dog = await db(Dog.objects.create)(name="Rex")
    pk = dog.pk
    client = await ws(f"/dog/{pk}")
    await client.receive()
    await db(dog.delete)()
    frame = await client.receive()
    assert frame == {"id": pk, "localTime": frame["localTime"], "version": frame["version"], "type": "delete"}
    await db(Dog.objects.create)(id=pk, name="Rex again")
    frame = await client.receive()
    assert frame["type"] == "put" and frame["value"]["name"] == "Rex again"


async def test_a_missing_record_sends_nothing_until_it_is_created(ws):
    client = await ws("/dog/500")
    assert await client.nothing()
    await db(Dog.objects.create)(id=500, name="Fido")
    frame = await client.receive()
    assert frame["type"] == "put" and frame["id"] == 500 and frame["value"]["name"] == "Fido"


async def test_changes_to_other_records_never_arrive(ws):
    watched = await db(Dog.objects.create)(name="Watched")
    other = await db(Dog.objects.create)(name="Other")
    client = await ws(f"/dog/{watched.pk}")
    await client.receive()
    other.name = "Other, renamed"
    await db(other.save)()
    await db(Dog.objects.create)(name="New dog")
    await db(other.delete)()
    assert await client.nothing()


async def test_a_rolled_back_save_sends_nothing(ws):
    dog = await db(Dog.objects.create)(name="Rex")
    client = await ws(f"/dog/{dog.pk}")
    await client.receive()

    def save_then_fail():
        with transaction.atomic():
            Dog.objects.filter(pk=dog.pk).update(name="never")  # not a save(): no signal
            dog.name = "Never happened"
            dog.save()
            transaction.set_rollback(True)

    await db(save_then_fail)()
    assert await client.nothing()


async def test_several_saves_in_one_transaction_arrive_in_order_after_commit(ws):
    dog = await db(Dog.objects.create)(name="Rex", age=1)
    client = await ws(f"/dog/{dog.pk}")
    await client.receive()

    def three_saves():
        with transaction.atomic():
            for age in (2, 3, 4):
                dog.age = age
                dog.save()

    await db(three_saves)()
    ages = [(await client.receive())["value"]["age"] for _ in range(3)]
    assert ages == [2, 3, 4]


async def test_every_subscriber_of_a_record_gets_each_change(ws):
    dog = await db(Dog.objects.create)(name="Rex")
    clients = [await ws(f"/dog/{dog.pk}") for _ in range(5)]
    for client in clients:
        await client.receive()
    dog.name = "Rex the Second"
    await db(dog.save)()
    for client in clients:
        assert (await client.receive())["value"]["name"] == "Rex the Second"


async def test_frames_the_client_sends_on_the_default_stream_are_ignored(ws):
    dog = await db(Dog.objects.create)(name="Rex")
    client = await ws(f"/dog/{dog.pk}")
    await client.receive()
    await client.send({"name": "hijack"})
    await client.send_text("not json at all")
    await client.send_bytes(b"\x00\xff binary")
    assert await client.nothing()
    dog.name = "Still works"
    await db(dog.save)()
    assert (await client.receive())["value"]["name"] == "Still works"
    assert (await db(Dog.objects.get)(pk=dog.pk)).name == "Still works"


async def test_an_id_that_can_never_be_a_key_closes_with_4404(ws):
    client = await ws("/dog/not-a-number")
    assert await client.closed_with() == 4404


async def test_a_path_no_resource_answers_closes_with_4404(ws):
    client = await ws("/cat/1")
    assert await client.closed_with() == 4404


async def test_leading_zeros_name_the_same_record(ws):
    dog = await db(Dog.objects.create)(name="Rex")
    client = await ws(f"/dog/000{dog.pk}")
    assert (await client.receive())["id"] == dog.pk
    dog.age = 9
    await db(dog.save)()
    assert (await client.receive())["value"]["age"] == 9


async def test_a_change_is_encoded_once_however_many_subscribers_it_has(ws, monkeypatch):
    from harper_resources import protocol

    dog = await db(Dog.objects.create)(name="Rex")
    clients = [await ws(f"/dog/{dog.pk}") for _ in range(20)]
    for client in clients:
        await client.receive()
    calls = []
    real_encode = protocol.encode
    monkeypatch.setattr(protocol, "encode", lambda value: calls.append(value) or real_encode(value))
    dog.age = 11
    await db(dog.save)()
    for client in clients:
        assert (await client.receive())["value"]["age"] == 11
    from harper_resources import capture

    # Under database capture (PostgreSQL) the trigger encodes it, in the database.
    assert len(calls) == (0 if capture.captured(Dog, "default") else 1)
