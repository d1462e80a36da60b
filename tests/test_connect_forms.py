"""Every form of connect(incoming_messages), including the seed page's own examples."""

from __future__ import annotations

import asyncio

import pytest

from project.dogs.models import Dog
from tests import resources
from tests.conftest import db

pytestmark = pytest.mark.django_db(transaction=True)


# The seed's DogNotes: an async generator -------------------------------------------------


async def test_an_async_generator_relays_each_note_to_its_own_connection_only(ws):
    alice, bob = await ws("/seed/notes/341"), await ws("/seed/notes/341")
    await alice.send({"dogId": "341", "note": "good with kids"})
    assert await alice.receive() == {"dogId": "341", "note": "good with kids"}
    assert await bob.nothing(), "a yield goes to its own connection only"
    await bob.send({"dogId": "341", "note": "likes walks", "extra": "dropped"})
    assert await bob.receive() == {"dogId": "341", "note": "likes walks"}


async def test_a_generator_replaces_the_default_record_stream(ws):
    dog = await db(Dog.objects.create)(name="Rex")
    client = await ws(f"/seed/notes/{dog.pk}")
    dog.age = 3
    await db(dog.save)()
    assert await client.nothing(), "no record frames on a custom generator"


async def test_a_generator_that_ends_closes_the_socket_normally(ws):
    client = await ws("/two-then-done/1")
    assert [await client.receive(), await client.receive()] == [{"n": 1}, {"n": 2}]
    assert await client.closed_with() == 1000


async def test_a_generator_that_raises_closes_1011_without_the_exception_text(ws):
    client = await ws("/fails-while-streaming/1")
    assert await client.receive() == {"before": "failure"}
    message = await client.receive_raw()
    assert (message["type"], message["code"], message.get("reason")) == ("websocket.close", 1011, "Server error")


async def test_raising_close_connection_closes_with_its_code_and_reason(ws):
    client = await ws("/raises-close/1")
    await client.send({"go": True})
    message = await client.receive_raw()
    assert (message["code"], message["reason"]) == (4001, "told to go")


# Methods returning an async iterable -----------------------------------------------------


async def test_a_plain_method_may_return_any_async_iterable(ws):
    client = await ws("/returns-generator/1")
    assert [await client.receive() for _ in range(3)] == [0, 1, 2]
    assert await client.closed_with() == 1000


async def test_an_async_method_may_return_the_stream_of_super_connect(ws):
    dog = await db(Dog.objects.create)(name="Rex")
    client = await ws(f"/async-returns-stream/{dog.pk}")
    first = await client.receive()
    assert first["type"] == "put" and first["value"]["name"] == "Rex", "the current record comes first"
    assert await client.receive() == {"hello": str(dog.pk)}


async def test_returning_something_not_async_iterable_closes_1011_with_a_generic_reason(ws):
    client = await ws("/returns-number/1")
    message = await client.receive_raw()
    assert (message["code"], message["reason"]) == (1011, "Server error")


async def test_an_exception_in_connect_closes_1011_and_never_leaks_its_text(ws, caplog):
    client = await ws("/fails-in-connect/1")
    message = await client.receive_raw()
    assert (message["code"], message["reason"]) == (1011, "Server error")
    assert "secret" not in message["reason"]
    assert "secret: SELECT" in caplog.text, "the server log has the details"


# super().connect(): the seed's DogStatus, line for line ----------------------------------


async def test_the_minimal_super_connect_is_the_default_record_stream(ws):
    dog = await db(Dog.objects.create)(name="Rex")
    client = await ws(f"/seed/minimal/{dog.pk}")
    assert (await client.receive())["value"]["name"] == "Rex"
    dog.name = "Rex II"
    await db(dog.save)()
    assert (await client.receive())["value"]["name"] == "Rex II"


async def test_the_seed_dog_status_sends_the_record_first_then_pulses_notes_and_updates(ws):
    dog = await db(Dog.objects.create)(name="Rex")
    client = await ws(f"/seed/status/{dog.pk}")
    first = await client.receive()
    assert first["type"] == "put" and first["value"]["name"] == "Rex", "the current record is the first frame"
    assert await client.receive() == {"dogId": str(dog.pk), "status": "connection active"}
    await client.send({"dogId": str(dog.pk), "note": "good with kids"})
    assert await client.receive() == {"dogId": str(dog.pk), "note": "good with kids"}
    dog.age = 4
    await db(dog.save)()
    assert (await client.receive())["value"]["age"] == 4
    assert await client.receive(timeout=2) == {"dogId": str(dog.pk), "status": "connection active"}


async def test_the_seed_dog_status_survives_a_message_without_the_fields_it_reads(ws):
    dog = await db(Dog.objects.create)(name="Rex")
    client = await ws(f"/seed/status/{dog.pk}")
    await client.receive()
    await client.send(["not", "a", "note"])
    await client.send_text("plain text")
    await client.send({"dogId": str(dog.pk), "note": "still here"})
    frames = [await client.receive() for _ in range(2)]
    assert {"dogId": str(dog.pk), "note": "still here"} in frames


# The stream and the incoming messages ----------------------------------------------------


async def test_closing_the_stream_closes_the_socket_with_its_code_and_reason(ws):
    client = await ws("/closes-with-code/1")
    await client.send({"please": "close"})
    message = await client.receive_raw()
    assert (message["code"], message["reason"]) == (4000, "bye")


async def test_on_data_and_async_iteration_both_see_every_message(ws):
    client = await ws("/listens-and-iterates/1")
    await client.send({"n": 1})
    await client.send({"n": 2})
    frames = [await client.receive() for _ in range(4)]
    assert [f for f in frames if "heard" in f] == [{"heard": {"n": 1}}, {"heard": {"n": 2}}]
    assert [f for f in frames if "iterated" in f] == [{"iterated": {"n": 1}}, {"iterated": {"n": 2}}]


@pytest.mark.parametrize(
    ("send", "expected"),
    [
        (("text", '{"a": 1}'), {"a": 1}),
        (("text", "[1, 2]"), [1, 2]),
        (("text", '"just a string"'), "just a string"),
        (("text", "not json"), {"contentType": "application/octet-stream", "data": b"not json"}),
        (("bytes", b"\x00\xffraw"), {"contentType": "application/octet-stream", "data": b"\x00\xffraw"}),
        (("bytes", b'{"a": 1}'), {"contentType": "application/octet-stream", "data": b'{"a": 1}'}),
        (("text", "[" * 100_000), {"contentType": "application/octet-stream", "data": b"[" * 100_000}),
    ],
)
async def test_incoming_frames_are_decoded_as_the_design_says(ws, send, expected):
    seen = []

    class Spy(resources.Public):
        async def connect(self, incoming_messages):
            async for message in incoming_messages:
                seen.append(message)
                yield {"ok": True}

    from channels.testing import WebsocketCommunicator

    communicator = WebsocketCommunicator(Spy.as_asgi(), "/spy")
    assert (await communicator.connect())[0]
    kind, value = send
    await communicator.send_to(**({"text_data": value} if kind == "text" else {"bytes_data": value}))
    assert await communicator.receive_json_from() == {"ok": True}
    assert seen == [expected]
    await communicator.disconnect()


async def test_close_callbacks_run_once_and_tasks_started_through_the_stream_are_cancelled(ws):
    resources.events.clear()
    client = await ws("/close-callbacks/1")
    await asyncio.sleep(0.05)
    await client.leave()
    await asyncio.sleep(0.05)
    assert sorted(resources.events) == ["async close", "sync close", "task cancelled"]


async def test_a_generator_is_closed_when_the_client_leaves(ws):
    resources.events.clear()
    client = await ws("/generator-cleanup/1")
    await client.send({"x": 1})
    assert await client.receive() == {"x": 1}
    await client.leave()
    assert resources.events == ["generator closed"]


async def test_frames_sent_before_iteration_starts_are_kept_unless_the_resource_returned_a_stream(ws):
    """A stream resource takes frames through listeners or an iteration already started;
    it keeps earlier ones only when it sets keep_unread. A generator keeps them."""
    kept = [{"iterated": 1}, {"iterated": 2}, {"iterated": "go"}, {"iterated": "after"}]
    for path, expected in [
        ("/iterates-late", [{"iterated": "after"}]),
        ("/iterates-late-keeping", kept),
        ("/generator-iterates-late", kept),
    ]:
        client = await ws(path)
        if path.startswith("/generator"):
            assert await client.receive() == {"ready": True}
        for message in (1, 2, "go", "after"):
            await client.send(message)
        frames = []
        while not frames or frames[-1] != {"iterated": "after"}:
            frames.append(await client.receive())
        assert frames == expected, path
