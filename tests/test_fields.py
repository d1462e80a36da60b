"""``fields``, ``exclude`` and ``serialize`` choose what a resource's ``value`` holds;
a password hash never leaves the server unless a resource lists it."""

from __future__ import annotations

import asyncio

import pytest
from django.contrib.auth.models import User
from django.db import connection

from harper_resources import Resource, capture
from harper_resources.checks import check_secret_fields
from project.dogs.models import Dog
from tests import resources
from tests.conftest import db

pytestmark = pytest.mark.django_db(transaction=True)


async def test_a_resource_on_users_never_sends_the_password_hash_first_live_or_resumed(ws):
    user = await db(User.objects.create_user)(username="ada", password="correct horse battery")
    client = await ws(f"/user/{user.pk}")
    first = await client.receive()
    assert first["value"]["username"] == "ada" and "password" not in first["value"]
    user.first_name = "Ada"
    await db(user.save)()
    live = await client.receive()
    assert live["value"]["first_name"] == "Ada" and "password" not in live["value"]
    resumed = await (await ws(f"/user/{user.pk}?since={first['version']!r}")).receive()
    assert resumed["version"] == live["version"] and "password" not in resumed["value"]
    previous = await (await ws(f"/user/{user.pk}?previousCount=5")).receive()
    assert "password" not in previous["value"]


async def test_fields_on_a_dog_resource_send_only_those_fields(ws):
    dog = await db(Dog.objects.create)(name="Rex", breed="Beagle", age=3)
    record, collection = await ws(f"/dog-names/{dog.pk}"), await ws("/dog-names/")
    for client in (record, collection):
        assert (await client.receive())["value"] == {"id": dog.pk, "name": "Rex"}
    dog.name = "Max"
    await db(dog.save)()
    for client in (record, collection):
        assert (await client.receive())["value"] == {"id": dog.pk, "name": "Max"}


async def test_serialize_can_add_a_computed_key_to_what_exclude_leaves(ws):
    dog = await db(Dog.objects.create)(name="Rex", breed="Beagle", age=3)
    client = await ws(f"/labelled-dog/{dog.pk}")
    assert (await client.receive())["value"] == {
        "id": dog.pk,
        "name": "Rex",
        "breed": "Beagle",
        "label": "Rex the Beagle",
    }
    dog.breed = "Basset"
    await db(dog.save)()
    assert (await client.receive())["value"]["label"] == "Rex the Basset"


async def test_twenty_subscribers_of_a_projecting_resource_cost_one_serialize_per_change(ws):
    dog = await db(Dog.objects.create)(name="Rex", breed="Beagle", age=3)
    clients = [await ws(f"/counted-dog/{dog.pk}") for _ in range(20)]
    for client in clients:
        await client.receive()
    resources.CountedDogs.serialized = 0
    dog.age = 4
    await db(dog.save)()
    frames = await asyncio.gather(*(client.receive() for client in clients))
    assert {frame["value"]["age"] for frame in frames} == {4}
    assert resources.CountedDogs.serialized == 1


def test_the_capture_trigger_builds_a_user_value_without_the_password():
    sql = "\n".join(capture.trigger_sql(User, connection))
    assert "'username'" in sql and "'password'" not in sql


def test_a_resource_on_a_model_with_a_password_is_warned_about_as_W003_until_it_lists_its_fields():
    class NamedUsers(Resource):
        model = User
        fields = ("id", "username")

    messages = check_secret_fields()
    warned = [message for message in messages if message.obj is resources.Users]
    assert [message.id for message in warned] == ["harper_resources.W003"]
    assert "password" in warned[0].msg and "fields" in warned[0].hint
    assert not [message for message in messages if message.obj is NamedUsers]
