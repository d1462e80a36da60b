"""Nothing of a connection outlives it: tasks, hub subscriptions, streams, callbacks."""

from __future__ import annotations

import asyncio
import gc

import pytest
from channels.testing import WebsocketCommunicator

from harper_resources import hub
from harper_resources.streams import IncomingMessages, Stream
from project.dogs.models import Dog
from tests.conftest import db

pytestmark = pytest.mark.django_db(transaction=True)


def live(kind):
    gc.collect()
    return sum(1 for obj in gc.get_objects() if isinstance(obj, kind))


async def test_a_thousand_dog_status_connections_leave_nothing_behind():
    from tests.routing import application

    dog = await db(Dog.objects.create)(name="Rex")
    tasks_before = len(asyncio.all_tasks())
    streams_before, incoming_before = live(Stream), live(IncomingMessages)
    for n in range(1000):
        communicator = WebsocketCommunicator(application, f"/status/{dog.pk}")
        connected, _ = await communicator.connect()
        assert connected
        if n % 100 == 0:
            # Now and then wait for the first frames, so some cycles end mid-stream and
            # some after the pulse timer started.
            assert (await communicator.receive_json_from())["type"] == "put"
            await communicator.send_json_to({"dogId": str(dog.pk), "note": f"note {n}"})
        await communicator.disconnect()
    await asyncio.sleep(0.1)
    assert hub.running_hubs() == [], "no hub keeps a subscription"
    assert len(asyncio.all_tasks()) == tasks_before, "no pulse timer, writer, reader or hub task is left"
    assert live(Stream) == streams_before, "no stream (and so none of its close callbacks) is left"
    assert live(IncomingMessages) == incoming_before, "no incoming-message object (or data callback) is left"


async def test_a_disconnect_while_the_first_record_is_loading_drops_the_subscription():
    from tests.routing import application

    dog = await db(Dog.objects.create)(name="Rex")
    for _ in range(20):
        communicator = WebsocketCommunicator(application, f"/dog/{dog.pk}")
        await communicator.connect()
        await communicator.disconnect()
    await asyncio.sleep(0.1)
    assert hub.running_hubs() == []
