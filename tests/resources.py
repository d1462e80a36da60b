"""Resources that exercise each form of connect() in the communicator tests."""

from __future__ import annotations

import asyncio
import threading

from django.contrib.auth.models import User

from harper_resources import Resource
from harper_resources.exceptions import CloseConnection
from project.dogs.models import Dog

#: What close callbacks saw, for the tests to read.
events: list[str] = []


class Public(Resource):
    def allow_read(self, user):
        return True


class TwoThenDone(Public):
    """An async generator that ends by itself: the socket closes normally."""

    async def connect(self, incoming_messages):
        yield {"n": 1}
        yield {"n": 2}


class SpeaksHarper(TwoThenDone):
    """Speaks only the ``harper`` subprotocol."""

    subprotocols = ["harper"]


class ReturnsGenerator(Public):
    """A plain method returning an async iterable."""

    def connect(self, incoming_messages):
        async def numbers():
            for n in range(3):
                yield n

        return numbers()


class AsyncReturnsStream(Public):
    """An async method that returns super().connect()'s stream after sending on it."""

    model = Dog

    async def connect(self, incoming_messages):
        outgoing = super().connect(incoming_messages)
        await asyncio.sleep(0)
        outgoing.send({"hello": self.id})
        return outgoing


class ReturnsNumber(Public):
    """connect() returning something that is not async iterable: 1011."""

    def connect(self, incoming_messages):
        return 42


class FailsInConnect(Public):
    """connect() raising: 1011 with a generic reason, never the exception text."""

    def connect(self, incoming_messages):
        raise RuntimeError("secret: SELECT * FROM passwords")


class FailsWhileStreaming(Public):
    async def connect(self, incoming_messages):
        yield {"before": "failure"}
        raise RuntimeError("secret internals")


class ClosesWithCode(Public):
    """Closes its own stream with a code and reason when told to."""

    def connect(self, incoming_messages):
        outgoing = super().connect(incoming_messages)
        incoming_messages.on("data", lambda message: outgoing.close(4000, "bye"))
        return outgoing


class RaisesCloseConnection(Public):
    """Raises CloseConnection(code) on the first client message (``as_asgi(code=...)``)."""

    code = 4001

    async def connect(self, incoming_messages):
        async for message in incoming_messages:
            raise CloseConnection(self.code, "told to go")
            yield message


class ClosesItself(Public):
    """Channels' ``await self.close(code)`` from ``receive()``, on the first client
    message (``as_asgi(code=...)``; 1011 by default)."""

    code = 1011

    async def receive(self, text_data=None, bytes_data=None):
        await self.close(self.code, "asked to close")


class ListensAndIterates(Public):
    """Uses on("data") and async iteration of the same incoming messages together."""

    def connect(self, incoming_messages):
        outgoing = super().connect(incoming_messages)
        incoming_messages.on("data", lambda message: outgoing.send({"heard": message}))

        async def relay():
            async for message in incoming_messages:
                outgoing.send({"iterated": message})

        outgoing.create_task(relay())
        return outgoing


class CloseCallbacks(Public):
    """Registers a sync and an async close callback and a task started through the stream."""

    def connect(self, incoming_messages):
        outgoing = super().connect(incoming_messages)

        async def forever():
            try:
                await asyncio.sleep(3600)
            except asyncio.CancelledError:
                events.append("task cancelled")
                raise

        async def async_callback():
            events.append("async close")

        outgoing.create_task(forever())
        outgoing.on("close", lambda: events.append("sync close"))
        outgoing.on("close", async_callback)
        return outgoing


class GeneratorCleanup(Public):
    async def connect(self, incoming_messages):
        try:
            async for message in incoming_messages:
                yield message
        finally:
            events.append("generator closed")


class Publisher(Public):
    """Publishes each client message to every subscriber of its dog."""

    model = Dog

    def connect(self, incoming_messages):
        outgoing = super().connect(incoming_messages)
        incoming_messages.on("data", self.publish)
        return outgoing


class HearsPublisher(Public):
    """Dog's default stream, also passing on what Publisher publishes."""

    model = Dog
    accepts_messages_from = (Publisher,)


class PlainPublisher(Public):
    """A plain resource: its stream carries only what is sent or published to it."""

    def connect(self, incoming_messages):
        outgoing = super().connect(incoming_messages)
        incoming_messages.on("data", self.publish)
        return outgoing


class PrivateDogs(Resource):
    """Dog with the default permission: the model's view permission."""

    model = Dog


class MembersOnly(Resource):
    """A plain resource with the default: any authenticated user."""

    async def connect(self, incoming_messages):
        yield {"user": self.user.get_username()}


class AsyncAllowRead(Resource):
    model = Dog

    async def allow_read(self, user):
        return user.get_username() == "async-friend"


class YoungDogsOnly(Public):
    """A narrowed collection: only dogs under 10 are shown."""

    model = Dog

    def get_queryset(self):
        return super().get_queryset().filter(age__lt=10)

    def allow_record(self, record):
        return record["age"] < 10


class SlowNarrowedDogs(Public):
    """Narrowed with ``allow_record``, and its first read waits for the test: changes
    committed meanwhile arrive while the first frames are still being read."""

    model = Dog
    #: Set once the first read has read the database.
    read_done = threading.Event()
    #: Set by the test to let the first read finish.
    read_may_finish = threading.Event()

    def allow_record(self, record):
        return True

    def _first_read(self):
        read = super()._first_read()
        self.read_done.set()
        assert self.read_may_finish.wait(10), "the test never let the first read finish"
        return read


class StuckReader(Public):
    """Starts reading its messages, then never reads another."""

    async def connect(self, incoming_messages):
        async for _message in incoming_messages:
            await asyncio.sleep(3600)
            yield _message


class WaitsInConnect(CloseCallbacks):
    """An async connect() that opens its stream, then never returns it."""

    async def connect(self, incoming_messages):
        outgoing = super().connect(incoming_messages)
        events.append("connect waits")
        await asyncio.sleep(3600)
        return outgoing


class IteratesLate(Public):
    """Returns its stream and starts iterating the client's messages only when one of
    them says "go" (seen by a data listener); ``keep`` asks to keep earlier frames."""

    keep = False

    def connect(self, incoming_messages):
        outgoing = super().connect(incoming_messages)
        if self.keep:
            incoming_messages.keep_unread = True

        async def relay():
            async for message in incoming_messages:
                outgoing.send({"iterated": message})

        incoming_messages.on("data", lambda message: message == "go" and outgoing.create_task(relay()))
        return outgoing


class IteratesLateKeeping(IteratesLate):
    keep = True


class GeneratorIteratesLate(Public):
    """An async generator that yields first and iterates only once a message said "go"."""

    async def connect(self, incoming_messages):
        go = asyncio.Event()
        incoming_messages.on("data", lambda message: message == "go" and go.set())
        yield {"ready": True}
        await go.wait()
        async for message in incoming_messages:
            yield {"iterated": message}


class Users(Public):
    """A resource on Django's User with no ``fields``: the password hash must stay home.
    (System check W003 warns about exactly this resource.)"""

    model = User


class DogNames(Public):
    """Only the key and the name of each dog."""

    model = Dog
    fields = ("id", "name")


class LabelledDogs(Public):
    """Every field but the age, and a computed label."""

    model = Dog
    exclude = ("age",)

    def serialize(self, record):
        return {**record, "label": f"{record['name']} the {record['breed']}"}


class CountedDogs(Public):
    """Counts how often its ``serialize`` runs."""

    model = Dog
    serialized = 0

    def serialize(self, record):
        type(self).serialized += 1
        return record
