"""The demo's /dog/<id>: record updates, a pulse every second, notes shared by all."""

from __future__ import annotations

import time

import pytest

from project.dogs.models import Dog
from tests.conftest import db

pytestmark = pytest.mark.django_db(transaction=True)

PULSE = {"status": "connection active"}


async def frames_until(client, predicate, limit=10):
    seen = []
    for _ in range(limit):
        frame = await client.receive(timeout=3)
        seen.append(frame)
        if predicate(frame):
            return frame, seen
    raise AssertionError(f"not found in {seen}")


async def test_each_connection_gets_the_status_pulse_every_second(ws):
    dog = await db(Dog.objects.create)(name="Rex")
    client = await ws(f"/status/{dog.pk}")
    assert (await client.receive())["type"] == "put"
    stamps = []
    for _ in range(3):
        assert await client.receive(timeout=2) == {"dogId": str(dog.pk), **PULSE}
        stamps.append(time.monotonic())
    assert 1.6 < stamps[2] - stamps[0] < 2.6, "one pulse a second"


async def test_a_note_reaches_every_client_on_that_dog_the_sender_too(ws):
    dog = await db(Dog.objects.create)(name="Rex")
    other = await db(Dog.objects.create)(name="Other")
    sender, watcher = await ws(f"/status/{dog.pk}"), await ws(f"/status/{dog.pk}")
    elsewhere = await ws(f"/status/{other.pk}")
    await sender.send({"dogId": str(dog.pk), "note": "good with kids"})
    for client in (sender, watcher):
        frame, _ = await frames_until(client, lambda f: f.get("type") == "message")
        assert frame["value"] == {"dogId": str(dog.pk), "note": "good with kids"}
    _, seen = await frames_until(elsewhere, lambda f: f == {"dogId": str(other.pk), **PULSE})
    assert all(f.get("type") != "message" for f in seen)


async def test_messages_that_are_not_notes_are_ignored(ws):
    dog = await db(Dog.objects.create)(name="Rex")
    client = await ws(f"/status/{dog.pk}")
    for junk in ({"note": ""}, {"note": 5}, {"other": "x"}, [1, 2], "text"):
        await client.send(junk)
    await client.send_bytes(b"\x00")
    await client.send({"dogId": "999", "note": "  real note  "})
    frame, seen = await frames_until(client, lambda f: f.get("type") == "message")
    assert frame["value"] == {"dogId": str(dog.pk), "note": "real note"}, "notes go to the dog of the path"
    assert sum(1 for f in seen if f.get("type") == "message") == 1
