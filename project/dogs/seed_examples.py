"""The three server examples of Harper's WebSockets page, translated line for line.

Served by the demo at /notes/<id>, /status-minimal/<id> and /status/<id> (see
project/routing.py) and documented in the README with what a client receives. The demo's
own /dog/<id> (resources.DogStatus) is the third one with notes shared by every client.
"""

import asyncio

from harper_resources import Resource

from .models import Dog


class PublicRead:
    """The demo's dogs are public: anyone may connect (the default needs a login)."""

    def allow_read(self, user):
        return True


class DogNotes(PublicRead, Resource):
    """A plain resource with its own stream: relays each note back to its sender."""

    async def connect(self, incoming_messages):
        async for message in incoming_messages:
            yield {"dogId": message["dogId"], "note": message["note"]}


class DogStatusMinimal(PublicRead, Resource):
    """The default record stream, returned from connect()."""

    model = Dog

    def connect(self, incoming_messages):
        outgoing = super().connect()
        return outgoing


class DogStatusSeed(PublicRead, Resource):
    """Default record stream plus a status pulse and echoed notes, on this connection."""

    model = Dog

    def connect(self, incoming_messages):
        outgoing = super().connect(incoming_messages)

        async def pulse():
            while True:
                outgoing.send({"dogId": self.id, "status": "connection active"})
                await asyncio.sleep(1)

        timer = asyncio.ensure_future(pulse())
        incoming_messages.on("data", lambda m: outgoing.send({"dogId": m["dogId"], "note": m["note"]}))
        outgoing.on("close", lambda: timer.cancel())
        return outgoing
