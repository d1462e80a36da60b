"""A resource's code failing on every frame logs one traceback per 10 s, with a count,
not one per frame (metrics.throttled_error)."""

from __future__ import annotations

import asyncio
import logging
import time
import types

from harper_resources import hub, metrics
from harper_resources.streams import Frame, IncomingMessages


def move_clock(monkeypatch, seconds):
    """Move the clock metrics reads ``seconds`` ahead (and only that one)."""
    now = time.monotonic() + seconds
    monkeypatch.setattr(metrics, "time", types.SimpleNamespace(monotonic=lambda: now))


def lines(caplog, text):
    return [record for record in caplog.records if text in record.getMessage()]


async def test_a_data_callback_failing_on_every_message_logs_one_traceback_per_10_s_with_the_count(caplog, monkeypatch):
    incoming = IncomingMessages(maxsize=10)
    incoming.on("data", lambda message: 1 / 0)
    before = metrics.snapshot().get("callback_failed", 0)
    with caplog.at_level(logging.ERROR, logger="harper_resources"):
        for n in range(10_000):
            incoming._push(n, 1)
        assert len(lines(caplog, "callback failed")) == 1, "one line for 10,000 failures"
        move_clock(monkeypatch, 10.5)
        incoming._push("ten seconds later", 1)
    first, later = lines(caplog, "callback failed")
    assert first.levelno == logging.ERROR and first.exc_info[0] is ZeroDivisionError, "with its traceback"
    assert "10000 time(s) since last report" in later.getMessage()
    assert metrics.snapshot()["callback_failed"] - before == 10_001, "every failure is counted"


async def test_an_async_callback_failing_on_every_message_logs_one_task_failure(caplog):
    incoming = IncomingMessages()

    async def fails(message):
        raise ZeroDivisionError

    incoming.on("data", fails)
    with caplog.at_level(logging.ERROR, logger="harper_resources"):
        for n in range(1000):
            incoming._push(n, 1)
        await asyncio.gather(*incoming._tasks, return_exceptions=True)
        await asyncio.sleep(0)  # the tasks' done callbacks log
    [line] = lines(caplog, "a connection task failed")
    assert line.exc_info[0] is ZeroDivisionError


async def test_a_listener_failing_on_every_frame_logs_one_traceback(caplog):
    local = hub.Hub(asyncio.get_running_loop(), None)

    def fails(frame):
        raise ZeroDivisionError

    await local.subscribe("harper.test.failing", fails)
    try:
        with caplog.at_level(logging.ERROR, logger="harper_resources"):
            for n in range(1000):
                local.dispatch("harper.test.failing", Frame(f'{{"n": {n}}}'))
    finally:
        local.unsubscribe("harper.test.failing", fails)
    [line] = lines(caplog, "a listener failed")
    assert line.exc_info[0] is ZeroDivisionError


async def test_a_generator_that_fails_on_every_connection_logs_one_traceback(caplog, monkeypatch):
    """The seed's DogNotes raises KeyError on ``{"other": 1}``: each such client closes
    with 1011, and a client reconnecting in a loop logs one line, not one per socket."""
    from channels.testing import WebsocketCommunicator
    from django.urls import path

    from harper_resources.routing import ResourceRouter
    from project.dogs.seed_examples import DogNotes

    application = ResourceRouter([path("notes/<str:id>", DogNotes.as_asgi())])
    move_clock(monkeypatch, 3600)  # past any earlier test's line for the same class
    with caplog.at_level(logging.ERROR, logger="harper_resources"):
        for _ in range(20):
            client = WebsocketCommunicator(application, "/notes/341")
            connected, _ = await client.connect()
            assert connected
            await client.send_json_to({"other": 1})
            closed = await client.receive_output(timeout=5)
            assert closed["type"] == "websocket.close" and closed["code"] in (1011, 4011)
            await client.disconnect()
    [line] = lines(caplog, "the stream of DogNotes failed")
    assert line.exc_info[0] is KeyError
