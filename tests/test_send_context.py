"""Every ASGI ``send`` runs inside the connection's own task and context, so server or
middleware code that wraps ``send`` with ``asyncio.timeout``, a TaskGroup or a
per-connection contextvar works for live frames too."""

from __future__ import annotations

import asyncio
import contextvars

import pytest

from project.dogs.models import Dog
from tests.conftest import db
from tests.routing import application as routes

pytestmark = pytest.mark.django_db(transaction=True)

connection = contextvars.ContextVar[object]("connection")


def timed_sends(app, seen):
    """``app`` behind middleware that marks each connection in a contextvar and gives
    each of its sends 5 seconds the way ``asyncio.timeout`` (3.11+) does: by cancelling
    the current task, which therefore must be the connection's own."""

    async def wrapped(scope, receive, send):
        me = object()
        connection.set(me)

        async def timed_send(message):
            seen.append((me, connection.get(None), asyncio.current_task()))
            task = asyncio.current_task()
            assert task is not None
            deadline = asyncio.get_running_loop().call_later(5, task.cancel)
            try:
                await send(message)
            finally:
                deadline.cancel()

        await app(scope, receive, timed_send)

    return wrapped


async def test_live_frames_are_sent_in_the_connections_own_task_and_context(ws):
    dog = await db(Dog.objects.create)(name="Rex", breed="Beagle", age=3)
    seen = []
    application = timed_sends(routes, seen)
    clients = [await ws(f"/dog/{dog.pk}", application=application) for _ in range(3)]
    for client in clients:
        assert (await client.receive())["value"]["age"] == 3
    for age in (4, 5, 6):
        dog.age = age
        await db(dog.save)()
        for client in clients:
            assert (await client.receive())["value"]["age"] == age
    assert len(seen) == 3 * (1 + 1 + 3)  # accept, first put, three changes
    assert all(me is found for me, found, _ in seen), "a send ran in another connection's (or no) context"
    assert all(task is not None for *_, task in seen), "a send ran outside any task"
