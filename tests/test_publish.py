"""publish: a message frame to every subscriber of a record, from resources and sync code."""

from __future__ import annotations

import pytest
from channels.routing import URLRouter
from django.urls import path

import harper_resources
from harper_resources import Resource
from project.dogs.models import Dog
from tests.conftest import db
from tests.resources import PlainPublisher, PrivateDogs
from tests.test_auth import basic, make_user
from tests.testapp.models import Stamped

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("layer")]


async def test_await_self_publish_reaches_every_subscriber_of_the_record(ws):
    dog = await db(Dog.objects.create)(name="Rex")
    other_dog = await db(Dog.objects.create)(name="Other")
    sender = await ws(f"/publisher/{dog.pk}")
    watcher = await ws(f"/publisher/{dog.pk}")
    collection = await ws("/publisher/")
    bystander = await ws(f"/publisher/{other_dog.pk}")
    for client in (sender, watcher, collection, collection, bystander):
        await client.receive()
    await sender.send({"note": "good with kids"})
    for client in (sender, watcher, collection):
        frame = await client.receive()
        assert (frame["type"], frame["id"], frame["value"]) == ("message", dog.pk, {"note": "good with kids"})
    assert await bystander.nothing()
    assert (await db(Dog.objects.get)(pk=dog.pk)).name == "Rex", "publishing does not write the record"


async def test_publish_from_sync_code_reaches_websocket_subscribers(ws):
    dog = await db(Dog.objects.create)(name="Rex")
    client = await ws(f"/dog/{dog.pk}")
    await client.receive()
    await db(harper_resources.publish)(Dog, dog.pk, {"alert": "walk time"})
    frame = await client.receive()
    assert (frame["type"], frame["value"]) == ("message", {"alert": "walk time"})


async def test_a_publish_through_a_protected_resource_never_reaches_a_public_one_of_the_same_model(ws):
    dog = await db(Dog.objects.create)(name="Rex")
    await db(make_user)("viewer", perms=["view_dog"])
    secret = await ws(f"/private-dog/{dog.pk}", headers=basic("viewer", "pw-123456"))
    public, collection = await ws(f"/dog/{dog.pk}"), await ws("/dog/")
    for client in (secret, public, collection):
        await client.receive()
    await db(harper_resources.publish)(PrivateDogs, dog.pk, {"secret": "vet notes"})
    frame = await secret.receive()
    assert (frame["type"], frame["value"]) == ("message", {"secret": "vet notes"})
    assert await public.nothing() and await collection.nothing()
    sender = await ws(f"/publisher/{dog.pk}")
    await sender.receive()
    await sender.send({"from": "publisher"})
    assert (await sender.receive())["value"] == {"from": "publisher"}
    assert await public.nothing() and await collection.nothing() and await secret.nothing()


async def test_a_publish_with_the_model_reaches_every_resource_of_it_and_a_resource_may_accept_anothers(ws):
    dog = await db(Dog.objects.create)(name="Rex")
    await db(make_user)("viewer", perms=["view_dog"])
    secret = await ws(f"/private-dog/{dog.pk}", headers=basic("viewer", "pw-123456"))
    clients = [secret, await ws(f"/dog/{dog.pk}"), await ws("/dog/"), await ws(f"/publisher/{dog.pk}")]
    hears = await ws(f"/hears-publisher/{dog.pk}")
    for client in (*clients, hears):
        await client.receive()
    await db(harper_resources.publish)(Dog, dog.pk, "to every resource of Dog")
    for client in (*clients, hears):
        assert (await client.receive())["value"] == "to every resource of Dog"
    await clients[3].send("from the publisher")
    assert (await hears.receive())["value"] == "from the publisher", "accepts_messages_from lets it through"
    assert (await clients[3].receive())["value"] == "from the publisher"
    assert all([await client.nothing() for client in clients[:3]])


async def test_publishing_leaves_the_records_version_unchanged(ws):
    record = await db(Stamped.objects.create)(title="stamped")
    client = await ws(f"/stamped/{record.pk}")
    version = (await client.receive())["version"]
    await db(harper_resources.publish)(Stamped, record.pk, "hello")
    assert (await client.receive())["type"] == "message"
    await client.leave()
    again = await ws(f"/stamped/{record.pk}")
    assert (await again.receive())["version"] == version


async def test_a_plain_resource_carries_what_is_published_to_it(ws):
    first, second = await ws("/plain-publisher/room-1"), await ws("/plain-publisher/room-1")
    elsewhere = await ws("/plain-publisher/room-2")
    await first.send({"hi": "all"})
    for client in (first, second):
        frame = await client.receive()
        assert (frame["type"], frame["id"], frame["value"]) == ("message", "room-1", {"hi": "all"})
    assert await elsewhere.nothing()
    await db(harper_resources.publish)(PlainPublisher, "room-2", "from a view")
    assert (await elsewhere.receive())["value"] == "from a view"


class Hündin(Resource):
    """A plain resource whose name is not ASCII."""

    def allow_read(self, user):
        return True


async def assert_carries_publishes(ws, resource):
    """Clients of a record and of the collection of ``resource`` receive a publish."""
    routes = URLRouter([path("r/<str:id>", resource.as_asgi()), path("r/", resource.as_asgi())])
    record, collection = await ws("/r/1", application=routes), await ws("/r/", application=routes)
    await db(harper_resources.publish)(resource, "1", "hello")
    for client in (record, collection):
        frame = await client.receive()
        assert (frame["type"], frame["id"], frame["value"]) == ("message", "1", "hello")


def room():
    """A plain resource defined inside a function (with a name short enough not to be
    hashed for its length alone)."""

    class Room(Resource):
        def allow_read(self, user):
            return True

    return Room


async def test_a_plain_resource_defined_inside_a_function_carries_what_is_published_to_it(ws):
    resource = room()
    assert "<locals>" in resource.table_name()
    await assert_carries_publishes(ws, resource)


async def test_a_plain_resource_with_a_non_ascii_name_carries_what_is_published_to_it(ws):
    await assert_carries_publishes(ws, Hündin)
