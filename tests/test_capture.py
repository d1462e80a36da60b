"""Changes made outside save() on PostgreSQL: triggers capture them for resources with
capture = "database" (the demo's dogs). Collected only when the suite runs on PostgreSQL
(tests/test_postgresql.py runs it there in CI)."""

from __future__ import annotations

import psycopg
import pytest
from django.db import connection

from project.dogs.models import Dog
from tests.conftest import db

pytestmark = pytest.mark.django_db(transaction=True)


def stored(pk):
    dog = Dog.objects.get(pk=pk)
    return {"id": dog.pk, "name": dog.name, "breed": dog.breed, "age": dog.age}


async def watch(ws, pk):
    record, collection = await ws(f"/dog/{pk}"), await ws("/dog/?omitCurrent=true")
    await record.receive()
    return record, collection


async def test_a_queryset_update_reaches_record_and_collection_subscribers_once_within_a_second(ws):
    dog = await db(Dog.objects.create)(name="Rex", age=1)
    record, collection = await watch(ws, dog.pk)
    await db(lambda: Dog.objects.filter(pk=dog.pk).update(age=5))()
    for client in (record, collection):
        frame = await client.receive(timeout=1)
        assert frame["type"] == "put" and frame["value"] == await db(stored)(dog.pk)
        assert await client.nothing(timeout=0.5), "each change once"


async def test_bulk_create_and_bulk_update_reach_the_collection(ws):
    collection = await ws("/dog/?omitCurrent=true")
    created = await db(Dog.objects.bulk_create)([Dog(name=f"Pup {n}") for n in range(3)])
    frames = [await collection.receive(timeout=1) for _ in range(3)]
    assert sorted(f["value"]["name"] for f in frames) == ["Pup 0", "Pup 1", "Pup 2"]
    for dog in created:
        dog.age = 9
    await db(Dog.objects.bulk_update)(created, ["age"])
    frames = [await collection.receive(timeout=1) for _ in range(3)]
    assert [f["value"]["age"] for f in frames] == [9, 9, 9]
    assert await collection.nothing(timeout=0.5)


async def test_a_queryset_delete_reaches_subscribers_as_a_delete(ws):
    dog = await db(Dog.objects.create)(name="Rex")
    pk = dog.pk
    record, collection = await watch(ws, pk)
    await db(lambda: Dog.objects.filter(pk=pk).delete())()
    for client in (record, collection):
        frame = await client.receive(timeout=1)
        assert (frame["type"], frame["id"]) == ("delete", pk)
        assert await client.nothing(timeout=0.5)


async def test_raw_sql_from_another_client_reaches_subscribers(ws):
    dog = await db(Dog.objects.create)(name="Rex", age=1)
    record, collection = await watch(ws, dog.pk)
    params = connection.get_connection_params()

    def psql_update():
        with psycopg.connect(
            dbname=params["dbname"], user=params.get("user"), host=params.get("host"), port=params.get("port")
        ) as raw:
            raw.execute("UPDATE dogs_dog SET name = 'Max', age = age + 1 WHERE id = %s", [dog.pk])

    await db(psql_update)()
    for client in (record, collection):
        frame = await client.receive(timeout=1)
        assert frame["value"] == {"id": dog.pk, "name": "Max", "breed": "", "age": 2}


async def test_a_save_is_sent_once_and_versions_keep_increasing(ws):
    dog = await db(Dog.objects.create)(name="Rex", age=1)
    record = await ws(f"/dog/{dog.pk}")
    first = await record.receive()
    dog.age = 2
    await db(dog.save)()
    frame = await record.receive(timeout=1)
    assert frame["value"]["age"] == 2 and frame["version"] > first["version"]
    assert await record.nothing(timeout=0.6), "the trigger sends it; the signal does not send it again"
