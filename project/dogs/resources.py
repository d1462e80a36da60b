"""The demo's live resources: the seed's DogStatus on /dog/<id>, the collection on /dog/."""

import asyncio

from django.conf import settings

from harper_resources import Resource

from .models import Dog

MAX_NOTE_LENGTH = 500

#: The demo opts into database capture where the database can do it (PostgreSQL:
#: DATABASE_URL=postgres://...): then QuerySet.update(), bulk operations and psql edits
#: reach the page too. On SQLite (the default) only save() and delete() are broadcast.
CAPTURE = "database" if "postgresql" in settings.DATABASES["default"]["ENGINE"] else "signals"


class DogCollection(Resource):
    """/dog/: every dog, then every change to any dog. Anyone may watch. On PostgreSQL,
    changes made outside save() (QuerySet.update(), bulk operations, psql) arrive too."""

    model = Dog
    capture = CAPTURE

    def allow_read(self, user):
        return True


class DogStatus(Resource):
    """/dog/<id>: the dog's record updates, a status pulse every second to this
    connection, and notes: what one client sends, every client on that dog receives."""

    model = Dog
    capture = CAPTURE

    def allow_read(self, user):
        return True

    def connect(self, incoming_messages):
        outgoing = super().connect(incoming_messages)

        async def pulse():
            while True:
                outgoing.send({"dogId": self.id, "status": "connection active"})
                await asyncio.sleep(1)

        timer = asyncio.ensure_future(pulse())
        incoming_messages.on("data", self.relay_note)
        outgoing.on("close", lambda: timer.cancel())
        return outgoing

    async def relay_note(self, message):
        """Publish ``{"dogId", "note"}`` to everyone on this dog; ignore anything else."""
        if not isinstance(message, dict):
            return
        note = message.get("note")
        if not isinstance(note, str) or not note.strip():
            return
        await self.publish({"dogId": self.id, "note": note.strip()[:MAX_NOTE_LENGTH]})


class Me(Resource):
    """/me: who this socket is logged in as. Needs a login (the session cookie of a
    browser, or HTTP Basic from a script); anonymous clients are closed with 3000."""

    async def connect(self, incoming_messages):
        yield {"username": self.user.get_username(), "isStaff": self.user.is_staff}
        async for _ in incoming_messages:
            pass  # stay open until the client leaves
