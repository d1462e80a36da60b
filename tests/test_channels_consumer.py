"""A Resource is a Channels AsyncWebsocketConsumer: what a Channels user knows works on it,
while record frames keep the per-process hub path (no channel per connection)."""

from __future__ import annotations

import json
from typing import Any

import pytest
from channels.generic.websocket import AsyncWebsocketConsumer
from channels.layers import InMemoryChannelLayer, get_channel_layer
from channels.routing import URLRouter
from channels.testing import WebsocketCommunicator
from channels_redis.core import RedisChannelLayer
from django.urls import path

from harper_resources import Resource
from project.dogs.models import Dog
from tests.conftest import db, redis_layer_settings, use_layers
from tests.test_live_close_codes import assert_closes, send

# The daphne and uvicorn servers of the close-code tests, as a fixture of this module too.
from tests.test_live_close_codes import server as server

CHAT = "dog-chat"


class PublicDogs(Resource):
    model = Dog

    def allow_read(self, user: Any) -> bool:
        return True


class ChatDogs(PublicDogs):
    """Joins the ``dog-chat`` group; passes its ``chat.message`` events to the client and
    closes on ``chat.close``, after a goodbye."""

    groups = [CHAT]

    async def chat_message(self, event: dict[str, Any]) -> None:
        await self.send(text_data=json.dumps({"chat": event["text"], "to": self.id}))

    async def chat_close(self, event: dict[str, Any]) -> None:
        await self.send(text_data=json.dumps({"chat": "bye"}))
        await self.close(event["code"])

    async def chat_broken(self, event: dict[str, Any]) -> None:
        raise RuntimeError("a handler that fails")


class Direct(Resource):
    """No groups, but a channel of its own: ``channel_layer.send(channel_name, ...)``
    reaches it. Tells the client its channel name in a first frame."""

    own_channel = True

    def allow_read(self, user: Any) -> bool:
        return True

    async def connect(self, incoming_messages: Any = None) -> Any:
        await self.send(text_data=json.dumps({"channel": self.channel_name}))
        return super().connect(incoming_messages)

    async def note(self, event: dict[str, Any]) -> None:
        await self.send(bytes_data=event["data"])


class Hooks(PublicDogs):
    """Channels' receive() and disconnect() hooks, next to Harper's incoming_messages."""

    seen: list[Any] = []

    def connect(self, incoming_messages: Any = None) -> Any:
        outgoing = super().connect(incoming_messages)
        incoming_messages.on("data", lambda message: Hooks.seen.append(("data", message)))
        return outgoing

    async def receive(self, text_data: str | None = None, bytes_data: bytes | None = None) -> None:
        Hooks.seen.append(("receive", text_data, bytes_data))
        if text_data == '"close"':
            await self.close(4321, "asked")

    async def disconnect(self, code: int) -> None:
        Hooks.seen.append(("disconnect", code))


class RefusesInConnect(PublicDogs):
    """Closes in connect(), before the socket is accepted: a refusal with that code."""

    async def connect(self, incoming_messages: Any = None) -> Any:
        await self.close(4007, "not today")
        return super().connect(incoming_messages)


class GeneratorCloses(Resource):
    """An async generator of its own that closes the socket itself: the generator ends there."""

    reached_after_close: list[bool] = []

    def allow_read(self, user: Any) -> bool:
        return True

    async def connect(self, incoming_messages: Any = None) -> Any:
        yield {"n": 1}
        await self.send(text_data="sent directly")
        await self.close(4002, "done")
        GeneratorCloses.reached_after_close.append(True)
        yield {"n": 2}


application = URLRouter(
    [
        path("dog/<str:id>", PublicDogs.as_asgi()),
        path("chat-dog/<str:id>", ChatDogs.as_asgi()),
        path("direct", Direct.as_asgi()),
        path("hooks/<str:id>", Hooks.as_asgi()),
        path("refuses/<str:id>", RefusesInConnect.as_asgi()),
        path("generator-closes", GeneratorCloses.as_asgi()),
    ]
)


def test_a_resource_is_an_async_websocket_consumer_routed_with_as_asgi():
    assert isinstance(ChatDogs(), AsyncWebsocketConsumer)
    app = ChatDogs.as_asgi()
    assert app.consumer_class is ChatDogs
    assert app.__name__ == "ChatDogs"


def test_a_resource_that_defines_channels_client_event_handlers_is_refused_with_what_to_use():
    with pytest.raises(TypeError, match="connect\\(incoming_messages\\), receive"):

        class Wrong(Resource):
            async def websocket_receive(self, message: dict[str, Any]) -> None:
                pass


@pytest.mark.django_db(transaction=True)
async def test_group_events_of_the_users_own_type_reach_the_client_while_record_frames_go_on(ws, layer):
    dog = await db(Dog.objects.create)(name="Rex")
    client = await ws(f"/chat-dog/{dog.pk}", application=application)
    assert (await client.receive())["value"]["name"] == "Rex"
    await get_channel_layer().group_send(CHAT, {"type": "chat.message", "text": "hello"})
    assert await client.receive() == {"chat": "hello", "to": str(dog.pk)}
    dog.name = "Rex II"
    await db(dog.save)()
    frame = await client.receive()
    assert frame["type"] == "put" and frame["value"]["name"] == "Rex II"
    await get_channel_layer().group_send(CHAT, {"type": "chat.message", "text": "again"})
    assert await client.receive() == {"chat": "again", "to": str(dog.pk)}
    assert await client.nothing()


@pytest.mark.django_db(transaction=True)
async def test_close_from_a_handler_sends_what_was_sent_before_then_the_code(ws):
    dog = await db(Dog.objects.create)(name="Rex")
    client = await ws(f"/chat-dog/{dog.pk}", application=application)
    await client.receive()
    await get_channel_layer().group_send(CHAT, {"type": "chat.close", "code": 1011})
    assert await client.receive() == {"chat": "bye"}
    assert await client.closed_with() == 1011


@pytest.mark.django_db(transaction=True)
async def test_a_failing_handler_closes_with_1011_and_is_logged(ws, caplog):
    dog = await db(Dog.objects.create)(name="Rex")
    client = await ws(f"/chat-dog/{dog.pk}", application=application)
    await client.receive()
    await get_channel_layer().group_send(CHAT, {"type": "chat.broken"})
    assert await client.closed_with() == 1011
    assert "a handler that fails" in caplog.text


@pytest.mark.django_db(transaction=True)
async def test_groups_are_joined_before_the_accept_and_left_when_the_client_leaves(ws):
    dog = await db(Dog.objects.create)(name="Rex")
    layer = get_channel_layer()
    client = await ws(f"/chat-dog/{dog.pk}", application=application)
    assert len(layer.groups.get(CHAT, {})) == 1
    await client.leave()
    assert CHAT not in layer.groups


async def test_own_channel_without_groups_receives_what_is_sent_to_its_channel_name(ws):
    client = await ws("/direct", application=application)
    channel = (await client.receive())["channel"]
    await get_channel_layer().send(channel, {"type": "note", "data": b"\x00\x01"})
    assert (await client.receive_raw())["bytes"] == b"\x00\x01"


@pytest.mark.django_db(transaction=True)
async def test_receive_gets_each_client_frame_after_incoming_messages_and_disconnect_gets_the_code(ws):
    Hooks.seen = []
    dog = await db(Dog.objects.create)(name="Rex")
    client = await ws(f"/hooks/{dog.pk}", application=application)
    await client.receive()
    await client.send({"n": 1})
    await client.send_bytes(b"\xff")
    await client.send("close")
    assert await client.closed_with() == 4321
    await client.leave()
    assert Hooks.seen[:4] == [
        ("data", {"n": 1}),
        ("receive", '{"n": 1}', None),
        ("data", {"contentType": "application/octet-stream", "data": b"\xff"}),
        ("receive", None, b"\xff"),
    ]
    assert Hooks.seen[-1][0] == "disconnect"


@pytest.mark.django_db(transaction=True)
async def test_close_in_connect_refuses_the_connection_with_that_code():
    dog = await db(Dog.objects.create)(name="Rex")
    communicator = WebsocketCommunicator(application, f"/refuses/{dog.pk}")
    connected, _ = await communicator.connect(timeout=3)
    assert connected  # accepted only to carry the code: a browser sees none otherwise
    message = await communicator.receive_output(timeout=3)
    assert message == {"type": "websocket.close", "code": 4007, "reason": "not today"}
    await communicator.wait(timeout=3)


async def test_close_from_the_connections_own_generator_ends_it_there_with_that_code(ws):
    GeneratorCloses.reached_after_close = []
    client = await ws("/generator-closes", application=application)
    assert await client.receive() == {"n": 1}
    assert (await client.receive_raw())["text"] == "sent directly"
    assert await client.closed_with() == 4002
    assert GeneratorCloses.reached_after_close == []


async def test_a_scope_of_another_type_is_refused():
    with pytest.raises(ValueError, match="WebSocket and HTTP connections only"):
        await PublicDogs()({"type": "lifespan"}, None, None)


# No channel per connection ------------------------------------------------------------


class CountingMemoryLayer(InMemoryChannelLayer):
    """The in-memory layer, remembering every channel it made."""

    made: list[str] = []

    async def new_channel(self, prefix: str = "specific.") -> str:
        channel = await super().new_channel(prefix)
        CountingMemoryLayer.made.append(channel)
        return channel


class CountingRedisLayer(RedisChannelLayer):
    """The Redis layer, remembering every channel it made (in the same list)."""

    async def new_channel(self, prefix: str = "specific.") -> str:
        channel = await super().new_channel(prefix)
        CountingMemoryLayer.made.append(channel)
        return channel


@pytest.fixture(params=["memory", "redis"])
def counting_layer(request: pytest.FixtureRequest) -> Any:
    """A layer that counts channels; yields the list of those it made."""
    CountingMemoryLayer.made = []
    if request.param == "memory":
        settings = {"default": {"BACKEND": f"{__name__}.CountingMemoryLayer"}}
    else:
        request.getfixturevalue("redis_service")
        settings = redis_layer_settings("redis")
        settings["default"]["BACKEND"] = f"{__name__}.CountingRedisLayer"
    with use_layers(settings):
        yield CountingMemoryLayer.made


@pytest.mark.django_db(transaction=True)
async def test_default_resources_make_no_channel_per_connection_and_group_resources_one_each(ws, counting_layer):
    dog = await db(Dog.objects.create)(name="Rex")
    clients = [await ws(f"/dog/{dog.pk}", application=application) for _ in range(5)]
    for client in clients:
        await client.receive()
    dog.name = "Rex II"
    await db(dog.save)()
    for client in clients:
        assert (await client.receive())["value"]["name"] == "Rex II"
    assert len(counting_layer) <= 1, "at most the process's hub channel, never one per connection"
    made = len(counting_layer)
    for _ in range(3):
        await ws(f"/chat-dog/{dog.pk}", application=application)
    assert len(counting_layer) == made + 3, "a resource with groups has a channel per connection"


# A real server ------------------------------------------------------------------------


def test_close_1011_reaches_a_real_client_as_1011_or_as_4011_under_daphne(server):
    assert_closes(server, "/closes-itself/1", {}, send({}), 1011)
