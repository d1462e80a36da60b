"""Hostile input on every resource: none crashes the server, leaks data or touches
another connection."""

from __future__ import annotations

import asyncio
import json
import time
import tracemalloc

import pytest
from asgiref.sync import async_to_sync
from channels.testing import WebsocketCommunicator
from django.test import override_settings
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from harper_resources import protocol
from project.dogs.models import Dog
from tests.conftest import db

pytestmark = pytest.mark.django_db(transaction=True)

PATHS = ["/dog/{pk}", "/dog/", "/status/{pk}", "/seed/notes/{pk}", "/seed/status/{pk}", "/publisher/{pk}"]


@pytest.mark.parametrize("path", PATHS)
async def test_a_frame_over_the_size_limit_closes_with_1009_and_others_carry_on(ws, path):
    dog = await db(Dog.objects.create)(name="Rex")
    bystander = await ws(f"/dog/{dog.pk}")
    await bystander.receive()
    with override_settings(HARPER_RESOURCES_MAX_MESSAGE_BYTES=1000):
        client = await ws(path.format(pk=dog.pk))
        await client.send_text("x" * 1001)
        while (message := await client.receive_raw())["type"] != "websocket.close":
            pass
        assert (message["code"], message["reason"]) == (1009, "Message too big")
        big = await ws(path.format(pk=dog.pk))
        await big.send_bytes(b"\0" * 1001)
        while (message := await big.receive_raw())["type"] != "websocket.close":
            pass
        assert message["code"] == 1009
    dog.age = 2
    await db(dog.save)()
    assert (await bystander.receive())["value"]["age"] == 2


async def test_the_size_limit_counts_utf8_bytes_not_characters(ws):
    with override_settings(HARPER_RESOURCES_MAX_MESSAGE_BYTES=1000):
        client = await ws("/seed/notes/1")
        await client.send_text(json.dumps({"dogId": "1", "note": "é" * 450}, ensure_ascii=False))  # ~ 920 bytes
        assert (await client.receive())["note"] == "é" * 450
        await client.send_text("é" * 501)  # 1002 bytes
        assert await client.closed_with() == 1009


async def test_a_flood_to_a_resource_that_stopped_reading_closes_1008(ws):
    with override_settings(HARPER_RESOURCES_RECEIVE_QUEUE_SIZE=50):
        client = await ws("/stuck-reader")
        for n in range(200):
            await client.send({"n": n})
        message = await client.receive_raw()
        assert (message["type"], message["code"], message["reason"]) == (
            "websocket.close",
            1008,
            "Too many unread messages",
        )


@override_settings(HARPER_RESOURCES_MESSAGE_RATE=1e9, HARPER_RESOURCES_MESSAGE_BURST=10**6)  # within the limit
async def test_a_flood_of_small_frames_on_the_default_stream_is_ignored_and_changes_still_flow(ws):
    dog = await db(Dog.objects.create)(name="Rex")
    flooder = await ws(f"/dog/{dog.pk}")
    watcher = await ws(f"/dog/{dog.pk}")
    await flooder.receive()
    await watcher.receive()
    for n in range(5000):
        await flooder.send({"n": n})
    dog.age = 9
    await db(dog.save)()
    assert (await watcher.receive())["value"]["age"] == 9
    assert (await flooder.receive(timeout=5))["value"]["age"] == 9


#: A text frame just under 1 MiB that decodes to 8 MiB: a list of 250,000 floats.
BIG_FRAME = "[" + "1e9," * 250_000 + "1]"
MiB = 1024 * 1024


@pytest.mark.parametrize("path", ["/dog/{pk}", "/status/{pk}"])
async def test_a_flood_of_big_frames_on_the_default_stream_is_not_kept_in_memory(ws, path):
    """/dog/ has no data listener and does not iterate: frames are dropped undecoded.
    /status/ has one: each frame is decoded for it and gone once it returned."""
    dog = await db(Dog.objects.create)(name="Rex")
    client = await ws(path.format(pk=dog.pk))
    await client.receive()
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        for _ in range(10):
            await client.send_text(BIG_FRAME)
        for _ in range(1000):  # until the server has read every frame
            if client.communicator.input_queue.empty():
                break
            await asyncio.sleep(0.01)
        await asyncio.sleep(0.1)
        held, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert (held - before) / MiB < 2, f"{(held - before) / MiB:.1f} MiB held after 10 x 1 MiB frames"
    assert (peak - before) / MiB < 20, f"{(peak - before) / MiB:.1f} MiB at the peak"


@pytest.mark.parametrize("layer", ["memory", "redis-pubsub"], indirect=True)
async def test_a_client_that_floods_messages_is_closed_1008_and_changes_still_reach_others_promptly(ws, layer):
    dog = await db(Dog.objects.create)(name="Rex")
    watcher = await ws(f"/publisher/{dog.pk}")
    await watcher.receive()
    flooder = await ws(f"/publisher/{dog.pk}")  # publishes every message it gets to the dog's clients
    await flooder.receive()
    for n in range(2000):
        await flooder.send({"note": n})
    while (message := await flooder.receive_raw(timeout=5))["type"] != "websocket.close":
        pass
    assert (message["code"], message["reason"]) == (1008, "Too many messages")
    started = time.monotonic()
    dog.age = 3
    await db(dog.save)()
    while (frame := await watcher.receive())["type"] == "message":
        pass  # the notes the flooder got out before it was closed
    assert frame["value"]["age"] == 3
    assert time.monotonic() - started < 1


def test_the_message_limit_allows_a_burst_then_the_rate(monkeypatch):
    from harper_resources import ratelimit

    clock = [1000.0]
    monkeypatch.setattr(ratelimit.time, "monotonic", lambda: clock[0])
    bucket = ratelimit.TokenBucket(rate=10, burst=5)
    assert [bucket.take() for _ in range(6)] == [True] * 5 + [False]
    clock[0] += 0.5  # five more
    assert [bucket.take() for _ in range(6)] == [True] * 5 + [False]
    clock[0] += 3600
    assert sum(bucket.take() for _ in range(50)) == 5, "never more than the burst saved up"


def never_reads(application):
    """``application`` behind a socket whose writes stall after the first frame, as when
    the client stops reading and its server applies backpressure (uvicorn does)."""

    async def app(scope, receive, send):
        written = 0

        async def stalling_send(message):
            nonlocal written
            if message["type"] == "websocket.send":
                written += 1
                if written > 1:
                    await asyncio.Event().wait()  # never returns
            await send(message)

        await application(scope, receive, stalling_send)

    return app


@override_settings(HARPER_RESOURCES_SEND_QUEUE_BYTES=MiB)
async def test_a_client_that_never_reads_is_closed_1013_once_a_mib_of_frames_waits_for_it(ws):
    from tests.routing import application

    dog = await db(Dog.objects.create)(name="Rex")
    slow = await ws(f"/publisher/{dog.pk}", application=never_reads(application))
    await slow.receive()
    sender = await ws(f"/publisher/{dog.pk}")  # publishes each message to the dog's clients
    await sender.receive()
    for _ in range(30):  # 3 MB relayed; 30 frames is far from SEND_QUEUE_SIZE
        await sender.send({"note": "n" * 100_000})
    message = await slow.receive_raw(timeout=5)
    assert (message["type"], message["code"], message["reason"]) == ("websocket.close", 1013, "Client too slow")


async def test_frames_after_the_client_closed_are_harmless(ws):
    dog = await db(Dog.objects.create)(name="Rex")
    client = await ws(f"/status/{dog.pk}")
    await client.receive()
    await client.leave()
    await client.communicator.send_input({"type": "websocket.receive", "text": '{"note": "late"}'})
    await asyncio.sleep(0.05)


@pytest.mark.parametrize(
    "raw_id",
    ["..", "../1", "%2F", "1%2F2", "-1", "0", "1e3", "9" * 30, "x" * 5000, " 1", "\uff11\uff12", "NaN", "1.5", "%00"],
)
async def test_ids_with_path_tricks_never_crash_or_read_another_record(ws, raw_id):
    dog = await db(Dog.objects.create)(id=1, name="Only dog")
    client = await ws(f"/dog/{raw_id}")
    message = await client.receive_raw(timeout=2) if not await client.nothing(0.3) else None
    if message is not None and message["type"] == "websocket.close":
        assert message["code"] == 4404
    elif message is not None:
        frame = json.loads(message["text"])
        assert frame["id"] == dog.pk and raw_id.strip() in {"1", "\uff11"}, f"{raw_id!r} read a record"


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4),
    max_leaves=20,
)


@given(
    frames=st.lists(st.one_of(json_values.map(json.dumps), st.text(max_size=50), st.binary(max_size=50)), max_size=8)
)
@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
def test_any_sequence_of_client_frames_leaves_the_demo_resource_working(frames):
    from tests.routing import application

    async def scenario():
        communicator = WebsocketCommunicator(application, "/status/77")
        assert (await communicator.connect())[0]
        for frame in frames:
            key = "bytes" if isinstance(frame, bytes) else "text"
            await communicator.send_input({"type": "websocket.receive", key: frame})
        await communicator.send_json_to({"dogId": "77", "note": "still alive"})
        for _ in range(20):
            output = await communicator.receive_output(timeout=3)
            assert output["type"] == "websocket.send", output
            frame = json.loads(output["text"])
            if frame.get("type") == "message" and frame["value"]["note"] == "still alive":
                break
        else:
            raise AssertionError("the connection stopped working")
        await communicator.disconnect()

    async_to_sync(scenario)()


@given(text=st.text(max_size=300), data=st.binary(max_size=300))
def test_decoding_a_client_frame_never_raises(text, data):
    protocol.decode_client_frame(text, None)
    assert protocol.decode_client_frame(None, data) == {"contentType": "application/octet-stream", "data": data}


@given(raw_id=st.text(max_size=200))
@settings(max_examples=60, deadline=None)
def test_any_id_text_either_names_a_key_or_is_refused_cleanly(raw_id):
    from harper_resources import tables
    from tests.testapp.models import Gadget, Tag

    for model in (Dog, Gadget, Tag):
        try:
            pk = tables.parse_pk(model, raw_id)
        except ValueError:
            continue
        assert protocol.record_group(tables.table_name(model), tables.key(pk))
