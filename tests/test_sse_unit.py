"""``harper_resources.sse`` in process: the event encoding, ``Last-Event-ID`` merging,
and the ends of a stream a live server cannot easily provoke (a client that reads
nothing, a user who loses access, a generator waiting on messages that never come)."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from harper_resources import http, hub, metrics, protocol, sse
from harper_resources.exceptions import BadRequest
from harper_resources.streams import Frame
from project.dogs.models import Dog
from tests import resources
from tests.conftest import db
from tests.routing import PublicDogs


def test_last_event_id_replaces_since_and_keeps_the_other_options():
    scope = {"headers": [(b"last-event-id", b"1700000000123.5")], "query_string": b"since=1&omitCurrent=true"}
    resumed = sse.resumed_scope(scope)
    options = protocol.subscription_options(resumed["query_string"])
    assert options.since == 1700000000123.5 and options.omit_current
    assert sse.resumed_scope({"headers": [], "query_string": b"since=5"})["query_string"] == b"since=5"
    assert sse.resumed_scope({"headers": [(b"last-event-id", b"")], "query_string": b""})["query_string"] == b""
    collection = sse.resumed_scope({"headers": [(b"last-event-id", b"1700000060000.5")]}, overlap=60_000.0)
    assert collection["query_string"] == b"since=1700000000000.5", "a collection resumes a minute earlier"
    for bad in (b"abc", b"inf", b"nan"):
        with pytest.raises(BadRequest):
            sse.resumed_scope({"headers": [(b"last-event-id", bad)], "query_string": b""})


def test_events_carry_an_id_only_for_record_states():
    put = Frame('{"type":"put","version":12.5}', "harper.dogs.dog.1", 12.5)
    assert sse.encode_event(put) == b'id: 12.5\ndata: {"type":"put","version":12.5}\n\n'
    assert sse.encode_event(put) is sse.encode_event(put), "a frame shared by many subscribers is encoded once"
    message = Frame('{"type":"message"}', None, 13.0)
    assert sse.encode_event(message) == b'data: {"type":"message"}\n\n'
    assert sse.encode_event({"status": "ok"}) == b'data: {"status":"ok"}\n\n'
    assert sse.encode_event(b"\x00\x01") == b'data: "AAE="\n\n', "bytes go out as JSON text of their base64"
    split = sse.encode_event(Frame('{\n"a": 1\n}'))
    assert split == b'data: {\ndata: "a": 1\ndata: }\n\n', "a line break in a frame never ends the event"
    assert sse.encode_event({"bad": object()}) is None


def test_close_codes_map_to_http_statuses():
    assert [sse.status_for(code) for code in (3000, 3003, 4404, 4400, 4429, 1011, 4999, 1000)] == [
        401,
        403,
        404,
        400,
        429,
        500,
        500,
        500,
    ]


def test_only_event_stream_gets_are_events():
    def scope(method: str, accept: bytes) -> dict[str, Any]:
        return {"type": "http", "method": method, "headers": [(b"accept", accept)]}

    assert http.wants_event_stream(scope("GET", b"text/event-stream"))
    assert http.wants_event_stream(scope("GET", b"text/html, text/event-stream;q=0.9"))
    assert not http.wants_event_stream(scope("GET", b"text/event-stream;q=0"))
    assert not http.wants_event_stream(scope("GET", b"application/json"))
    assert not http.wants_event_stream(scope("POST", b"text/event-stream"))


class Client:
    """One in-process SSE request: what the server sent, and a disconnect to give."""

    def __init__(self, resource: Any, path: str, kwargs: dict[str, str], *, stalls_after: int | None = None) -> None:
        self.sent: list[dict[str, Any]] = []
        self.left = asyncio.Event()
        self.stalled = asyncio.Event()
        self.stalls_after = stalls_after
        scope = {
            "type": "http",
            "method": "GET",
            "path": path,
            "query_string": b"",
            "headers": [(b"accept", b"text/event-stream")],
            "url_route": {"kwargs": kwargs},
        }
        self.resource = resource
        self.task = asyncio.ensure_future(sse.serve_events(resource, scope, self.receive, self.send))

    async def receive(self) -> dict[str, Any]:
        await self.left.wait()
        return {"type": "http.disconnect"}

    async def send(self, message: dict[str, Any]) -> None:
        if self.stalls_after is not None and len(self.sent) >= self.stalls_after:
            self.stalled.set()
            await asyncio.Event().wait()  # a client that reads nothing more
        self.sent.append(message)

    def body(self) -> bytes:
        return b"".join(message.get("body", b"") for message in self.sent if message["type"] == "http.response.body")

    async def until(self, condition: Any, timeout: float = 10) -> None:
        for _ in range(int(timeout / 0.02)):
            if condition():
                return
            await asyncio.sleep(0.02)
        raise AssertionError(f"timed out; sent {self.sent}")


async def no_hub_left() -> bool:
    for _ in range(250):
        if not hub.running_hubs():
            return True
        await asyncio.sleep(0.02)
    return False


@pytest.mark.django_db(transaction=True)
async def test_a_client_that_reads_nothing_is_dropped_with_its_subscriptions(settings):
    settings.HARPER_RESOURCES_SEND_QUEUE_SIZE = 5
    settings.HARPER_RESOURCES_SSE_KEEPALIVE = 0.5
    dog = await db(Dog.objects.create)(name="Slow")
    closed_before = metrics.snapshot().get("slow_client_closed", 0)
    client = Client(PublicDogs(), f"/dog/{dog.pk}", {"id": str(dog.pk)}, stalls_after=3)
    await client.until(lambda: b'"type":"put"' in client.body())
    for n in range(20):
        dog.name = f"Slow {n}"
        await db(dog.save)()
    await asyncio.wait_for(client.task, timeout=10)  # ended, though the client reads nothing
    assert metrics.snapshot().get("slow_client_closed", 0) == closed_before + 1, "closed as too slow (1013)"
    assert await no_hub_left(), "the subscription went with the client"


@pytest.mark.django_db(transaction=True)
async def test_a_user_who_loses_access_gets_a_close_event_and_the_response_ends(settings):
    settings.HARPER_RESOURCES_SSE_KEEPALIVE = 0.5
    dog = await db(Dog.objects.create)(name="Rex")
    resource = PublicDogs()
    client = Client(resource, f"/dog/{dog.pk}", {"id": str(dog.pk)})
    await client.until(lambda: b'"type":"put"' in client.body())
    resource._revoke(3003, "Forbidden")
    await asyncio.wait_for(client.task, timeout=10)
    assert client.body().endswith(b'event: close\ndata: {"code":3003,"reason":"Forbidden"}\n\n')
    assert client.sent[-1].get("more_body") is False
    assert await no_hub_left()


@pytest.mark.django_db(transaction=True)
async def test_a_generator_waiting_on_messages_gets_keep_alives_and_is_closed_when_the_client_leaves(settings):
    settings.HARPER_RESOURCES_SSE_KEEPALIVE = 0.2
    resources.events.clear()
    client = Client(resources.GeneratorCleanup(), "/generator-cleanup/1", {"id": "1"})
    await client.until(lambda: client.body().count(sse.KEEPALIVE) >= 3)
    assert client.sent[0]["status"] == 200
    assert b"data:" not in client.body(), "an EventSource sends no messages: the generator yields none"
    client.left.set()
    await asyncio.wait_for(client.task, timeout=10)
    assert resources.events == ["generator closed"]


class RefusesInConnect(PublicDogs):
    """Channels' ``await self.close(code)`` in ``connect()``: a refusal."""

    async def connect(self, incoming_messages):
        await self.close(4403, "not today")
        return super().connect(incoming_messages)


class GreetsInConnect(PublicDogs):
    """Channels' ``await self.send(...)`` in ``connect()``, before the record stream."""

    async def connect(self, incoming_messages):
        await self.send(text_data='{"hello": "first"}')
        return super().connect(incoming_messages)


@pytest.mark.django_db(transaction=True)
async def test_close_in_connect_refuses_the_event_stream_as_it_refuses_the_socket():
    dog = await db(Dog.objects.create)(name="Secret")
    client = Client(RefusesInConnect(), f"/dog/{dog.pk}", {"id": str(dog.pk)})
    await asyncio.wait_for(client.task, timeout=10)
    start = client.sent[0]
    assert start["status"] != 200
    assert b"Secret" not in client.body() and b"not today" in client.body()
    assert await no_hub_left()


@pytest.mark.django_db(transaction=True)
async def test_what_connect_sends_comes_first_as_an_event():
    dog = await db(Dog.objects.create)(name="Rex")
    client = Client(GreetsInConnect(), f"/dog/{dog.pk}", {"id": str(dog.pk)})
    await client.until(lambda: b'"type":"put"' in client.body())
    body = client.body()
    assert body.index(b'data: {"hello": "first"}') < body.index(b'"type":"put"')
    client.left.set()
    await asyncio.wait_for(client.task, timeout=10)
