"""Eager sends (``harper_resources/eager.py``): while a connection's writer is idle, a
frame the hub dispatches is written at once, as the writer task, without waking it.
What the writer task guaranteed must still hold: the send runs in that task (so
``asyncio.timeout`` and task groups work) and in its context, frames keep their order,
never two sends at once, and a send that suspends or fails ends as the writer's own."""

from __future__ import annotations

import asyncio
import contextvars
import logging

import pytest
from django.test import override_settings

from harper_resources import eager, metrics
from harper_resources.consumers import Resource
from harper_resources.streams import Stream

# Python 3.10 has no task Contexts to enter: there every frame wakes the writer (tested
# by the other stream tests).
pytestmark = pytest.mark.skipif(not eager.SUPPORTED, reason="eager sends need Python 3.11+")

connection = contextvars.ContextVar[str]("connection")


class Socket:
    """An ASGI ``send`` that records each frame with the task and context it ran in;
    ``hold`` makes the sends of the named frames wait until ``release``."""

    def __init__(self, hold: tuple[str, ...] = ()) -> None:
        self.sent: list[str] = []
        self.tasks: list[asyncio.Task | None] = []
        self.contexts: list[str | None] = []
        self.hold = hold
        self.gate = asyncio.get_running_loop().create_future()
        self.in_flight = self.most = 0
        self.cancelled: list[str] = []

    async def __call__(self, message):
        text = message["text"]
        self.tasks.append(asyncio.current_task())
        self.contexts.append(connection.get(None))
        self.in_flight += 1
        self.most = max(self.most, self.in_flight)
        try:
            if text in self.hold:
                await self.gate
            self.sent.append(text)
        except asyncio.CancelledError:
            self.cancelled.append(text)
            raise
        finally:
            self.in_flight -= 1


def start_writer(send, closes=None):
    """A stream and its writer task, started as ``Resource._start`` does (a Context of its
    own, in which this connection's contextvar is set). ``send`` gets the data frames;
    the close frame the writer sends once the stream ends goes to ``closes`` (its code)."""

    async def data_only(message):
        if message["type"] != "websocket.close":
            await send(message)
        elif closes is not None:
            closes.append(message["code"])

    resource = Resource()
    resource._asgi_send = data_only
    stream = Stream()
    context = contextvars.copy_context()
    context.run(connection.set, "this connection")
    resource._writer_context = context
    writer = asyncio.get_running_loop().create_task(resource._write_then_close(stream), context=context)  # novermin
    return stream, writer


def from_the_hub(stream, *items):
    """Send ``items`` the way the hub does: from a loop callback, outside any task."""
    loop = asyncio.get_running_loop()
    for item in items:
        loop.call_soon(stream.send, item)


async def test_a_frame_from_the_hub_is_written_at_once_as_the_writer_task_in_its_context(monkeypatch):
    socket = Socket()
    stream, writer = start_writer(socket)
    await asyncio.sleep(0)  # the writer is idle
    wakes = []
    monkeypatch.setattr(Stream, "_wake", lambda self: wakes.append(1))
    from_the_hub(stream, "a", "b", "c")
    await asyncio.sleep(0)
    assert socket.sent == ['"a"', '"b"', '"c"']
    assert wakes == [], "an idle writer is not woken for a send that completes at once"
    assert all(task is writer for task in socket.tasks), "the send runs as the connection's writer task"
    assert socket.contexts == ["this connection"] * 3, "and in the writer's context"
    monkeypatch.undo()
    stream.close()
    await writer


async def test_a_send_from_inside_a_task_still_goes_through_the_writer():
    socket = Socket()
    stream, writer = start_writer(socket)
    await asyncio.sleep(0)
    stream.send("from a task")  # this test's own task: not the writer's
    assert socket.sent == []
    await asyncio.sleep(0.01)
    assert socket.sent == ['"from a task"'] and socket.tasks == [writer]
    stream.close()
    await writer


async def test_a_send_that_suspends_is_finished_by_the_writer_and_later_frames_wait_behind_it():
    socket = Socket(hold=('"block"',))
    stream, writer = start_writer(socket)
    await asyncio.sleep(0)
    from_the_hub(stream, "first", "block", 0, 1, 2)
    await asyncio.sleep(0.01)
    assert socket.sent == ['"first"'], "frames after a suspended send wait for it"
    socket.gate.set_result(None)
    await asyncio.sleep(0.01)
    from_the_hub(stream, 3)  # the writer is idle again: eager again
    await asyncio.sleep(0)
    assert socket.sent == ['"first"', '"block"', "0", "1", "2", "3"]
    assert socket.most == 1, "never two sends on one socket at once"
    assert all(task is writer for task in socket.tasks)
    stream.close()
    await writer


async def test_asyncio_timeout_inside_an_eager_send_works_and_cancels_the_writer_it_ran_as():
    """A send that times out (``TimeoutError`` is an ``OSError``) ends the stream as a
    departed client does, as it would in the writer's own send."""
    timed_out = []

    async def send(message):
        # asyncio.timeout needs a current task: outside one it raises RuntimeError.
        try:
            async with asyncio.timeout(0.05):  # novermin
                if message["text"] == '"slow"':
                    await asyncio.sleep(5)
        except TimeoutError:
            timed_out.append(message["text"])
            raise

    stream, writer = start_writer(send)
    await asyncio.sleep(0)
    from_the_hub(stream, "fast", "slow")
    await asyncio.wait_for(writer, 2)
    assert timed_out == ['"slow"'], "the timeout fired inside the send, in the writer task"
    assert stream.closed and stream.close_code == 1001


async def test_a_writer_cancelled_before_it_resumes_a_suspended_send_cancels_that_send():
    socket = Socket(hold=('"block"',))
    stream, writer = start_writer(socket)
    await asyncio.sleep(0)
    asyncio.get_running_loop().call_soon(stream.send, "block")
    asyncio.get_running_loop().call_soon(writer.cancel)  # before the writer runs again
    with pytest.raises(asyncio.CancelledError):
        await writer
    assert socket.cancelled == ['"block"'], "the send got the cancellation where it waited"


@pytest.mark.parametrize("error", [ConnectionResetError("gone"), RuntimeError("after close")])
async def test_an_eager_send_to_a_departed_client_ends_the_stream_quietly(caplog, error):
    async def departed(message):
        raise error

    before = metrics.snapshot().get("client_gone", 0)
    stream, writer = start_writer(departed)
    await asyncio.sleep(0)
    with caplog.at_level(logging.WARNING, logger="harper_resources"):
        from_the_hub(stream, 1, 2, 3)
        await asyncio.wait_for(writer, 1)
    assert stream.closed and stream.close_code == 1001
    assert metrics.snapshot().get("client_gone", 0) == before + 1
    assert caplog.text == ""


@pytest.mark.parametrize("eager_send", [True, False])
async def test_an_eager_send_that_fails_otherwise_fails_the_writer_as_its_own_send_would(caplog, eager_send):
    async def broken(message):
        raise ValueError("broken server")

    closes = []
    with override_settings(HARPER_RESOURCES_EAGER_SEND=eager_send), caplog.at_level(logging.ERROR):
        stream, writer = start_writer(broken, closes)
        await asyncio.sleep(0)
        from_the_hub(stream, 1)
        await asyncio.wait_for(writer, 1)
    assert closes == [1011], "the stream failed: closed with 1011"
    assert "the stream of Resource failed" in caplog.text and "broken server" in caplog.text


async def test_eager_sends_can_be_turned_off():
    socket = Socket()
    with override_settings(HARPER_RESOURCES_EAGER_SEND=False):
        stream, writer = start_writer(socket)
        await asyncio.sleep(0)
    from_the_hub(stream, "a")
    await asyncio.sleep(0)
    assert socket.sent == [], "with EAGER_SEND off the frame waits for the writer's wake-up"
    await asyncio.sleep(0.01)
    assert socket.sent == ['"a"'] and socket.tasks == [writer]
    stream.close()
    await writer
