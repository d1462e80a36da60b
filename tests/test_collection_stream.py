"""The default stream of a collection path (/dog/): every record, then every change."""

from __future__ import annotations

import pytest
from django.test import override_settings

from project.dogs.models import Dog
from tests.conftest import db

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("layer")]


async def test_opening_the_collection_sends_one_put_per_record_in_key_order(ws):
    for pk, name in [(30, "C"), (10, "A"), (20, "B")]:
        await db(Dog.objects.create)(id=pk, name=name)
    client = await ws("/dog/")
    frames = [await client.receive() for _ in range(3)]
    assert [f["id"] for f in frames] == [10, 20, 30]
    assert all(f["type"] == "put" for f in frames)
    assert [f["value"]["name"] for f in frames] == ["A", "B", "C"]
    assert await client.nothing()


async def test_the_collection_then_carries_every_change_of_the_table(ws):
    first = await db(Dog.objects.create)(name="First")
    client = await ws("/dog/")
    await client.receive()
    second = await db(Dog.objects.create)(name="Second")
    created = await client.receive()
    assert (created["type"], created["id"], created["value"]["name"]) == ("put", second.pk, "Second")
    first.name = "First, renamed"
    await db(first.save)()
    assert (await client.receive())["value"]["name"] == "First, renamed"
    second_pk = second.pk
    await db(second.delete)()
    deleted = await client.receive()
    assert (deleted["type"], deleted["id"]) == ("delete", second_pk)


@override_settings(HARPER_RESOURCES_COLLECTION_LIMIT=2)
async def test_the_initial_dump_is_bounded_by_the_collection_limit(ws):
    for pk in (1, 2, 3, 4):
        await db(Dog.objects.create)(id=pk, name=f"Dog {pk}")
    client = await ws("/dog/")
    assert [(await client.receive())["id"] for _ in range(2)] == [1, 2]
    assert await client.nothing()
    await db(Dog.objects.filter(pk=4).get)()  # still there, just not sent
    dog = await db(Dog.objects.get)(pk=4)
    dog.age = 7
    await db(dog.save)()
    assert (await client.receive())["id"] == 4, "changes beyond the limit still arrive"


async def test_an_empty_table_sends_nothing_until_a_record_is_created(ws):
    client = await ws("/dog/")
    assert await client.nothing()
    await db(Dog.objects.create)(name="Newcomer")
    assert (await client.receive())["value"]["name"] == "Newcomer"


async def test_record_and_collection_subscribers_both_receive_one_change(ws):
    dog = await db(Dog.objects.create)(name="Rex")
    record = await ws(f"/dog/{dog.pk}")
    collection = await ws("/dog/")
    await record.receive()
    await collection.receive()
    dog.age = 5
    await db(dog.save)()
    assert (await record.receive())["value"]["age"] == 5
    assert (await collection.receive())["value"]["age"] == 5
    assert await record.nothing() and await collection.nothing(), "each change arrives once"
