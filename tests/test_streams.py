"""Stream and IncomingMessages on their own: the contracts resources rely on."""

from __future__ import annotations

import logging
import sys

import pytest

from harper_resources import metrics
from harper_resources.streams import Frame, IncomingMessages, Stream


async def drain(stream):
    return [item async for item in stream]


async def test_sent_messages_come_out_in_order_and_iteration_ends_on_close():
    stream = Stream()
    stream.send({"a": 1})
    stream.send("two")
    stream.close()
    assert await drain(stream) == [{"a": 1}, "two"], "what was queued before close is still written"


async def test_sends_after_close_are_ignored():
    stream = Stream()
    stream.close(4000, "done")
    stream.send("late")
    assert await drain(stream) == []
    assert (stream.close_code, stream.close_reason) == (4000, "done")


async def test_a_client_that_reads_too_slowly_is_closed_with_1013_and_its_queue_dropped(caplog, monkeypatch):
    monkeypatch.setattr(metrics, "_last_logged", {})  # an earlier test's line must not throttle this one
    stream = Stream(maxsize=3)
    with caplog.at_level(logging.WARNING, logger="harper_resources"):
        for n in range(10):
            stream.send(n)
    assert (stream.close_code, stream.close_reason) == (1013, "Client too slow")
    assert await drain(stream) == []
    assert caplog.text.count("read too slowly") == 1, "logged once, not per dropped message"


async def test_a_client_behind_by_more_bytes_than_the_bound_is_closed_with_1013_and_its_queue_dropped(
    caplog, monkeypatch
):
    monkeypatch.setattr(metrics, "_last_logged", {})
    stream = Stream(maxsize=1000, max_bytes=10_000)
    with caplog.at_level(logging.WARNING, logger="harper_resources"):
        for _ in range(5):
            stream.send(Frame("x" * 3000))  # the fourth would make 12,000 bytes
    assert (stream.close_code, stream.close_reason) == (1013, "Client too slow")
    assert await drain(stream) == []
    assert caplog.text.count("read too slowly") == 1


async def test_values_count_their_json_against_the_byte_bound_and_reading_frees_their_room():
    value = {"pad": "z" * 30}  # 41 bytes of JSON
    stream = Stream(max_bytes=100)
    stream.send(value)
    stream.send(value)
    assert await stream.__anext__() == value
    stream.send(value)
    assert not stream.closed, "82 bytes wait"
    stream.send(value)
    assert stream.close_code == 1013, "123 bytes would wait"
    alone = Stream(max_bytes=100)
    alone.send(Frame("y" * 1000))
    alone.close()
    assert len(await drain(alone)) == 1, "one frame bigger than the bound still goes out when nothing waits"


async def test_held_frames_wait_for_the_first_frames_which_go_out_ahead_of_them():
    stream = Stream()
    stream._hold()
    stream.send("live change")
    stream._release(["first record"])
    stream.close()
    assert await drain(stream) == ["first record", "live change"]


async def test_close_callbacks_run_once_even_if_the_connection_ends_twice():
    stream = Stream()
    calls = []
    stream.on("close", lambda: calls.append(1))
    stream._finish()
    stream._finish()
    assert calls == [1]


def test_on_refuses_an_event_it_does_not_have():
    with pytest.raises(ValueError, match="unknown event 'data'"):
        Stream().on("data", print)
    with pytest.raises(ValueError, match="unknown event 'close'"):
        IncomingMessages().on("close", print)


async def test_a_failing_data_callback_is_logged_and_the_next_message_still_arrives(caplog):
    incoming = IncomingMessages()
    seen = []
    incoming.on("data", lambda message: 1 / 0)
    incoming.on("data", seen.append)
    with caplog.at_level(logging.ERROR, logger="harper_resources"):
        incoming._push("one", 3)
        incoming._push("two", 3)
    assert seen == ["one", "two"]
    assert "ZeroDivisionError" in caplog.text


async def test_messages_sent_before_iteration_starts_are_kept():
    incoming = IncomingMessages()
    incoming._push("early", 5)
    incoming._end()
    assert [m async for m in incoming] == ["early"]


async def test_without_a_reader_the_oldest_messages_make_room():
    incoming = IncomingMessages(maxsize=2)
    for n in range(5):
        assert incoming._push(n, 1)
    incoming._end()
    assert [m async for m in incoming] == [3, 4]


async def test_a_resource_that_reads_too_slowly_makes_the_connection_close():
    incoming = IncomingMessages(maxsize=2)
    incoming.__aiter__()
    assert incoming._push(1, 1) and incoming._push(2, 1)
    assert not incoming._push(3, 1), "the third unread message asks for a 1008 close"


async def test_unread_bytes_are_bounded_too():
    incoming = IncomingMessages(maxsize=100, max_bytes=10)
    incoming.__aiter__()
    assert incoming._push("a", 6)
    assert not incoming._push("b", 6)


async def test_frames_kept_for_a_later_iteration_are_held_as_sent_and_decoded_when_read():
    incoming = IncomingMessages(max_bytes=3 * 1024 * 1024)
    big = "[" + "1e9," * 250_000 + "1]"  # 1 MiB of text, 8 MiB once decoded
    for _ in range(10):
        assert incoming._push_frame(big, None)
    assert incoming._bytes <= 3 * 1024 * 1024
    assert [size for _, size in incoming._queue] == [sys.getsizeof(big)] * 3, "counted as what is held"
    incoming._end()
    messages = [message async for message in incoming]
    assert len(messages) == 3 and len(messages[0]) == 250_001


async def test_a_frame_no_listener_or_iteration_can_take_is_dropped_without_being_decoded(monkeypatch):
    from harper_resources import protocol

    incoming = IncomingMessages()
    incoming.keep_unread = False
    monkeypatch.setattr(protocol, "decode_client_frame", lambda text, data: pytest.fail("decoded"))
    assert incoming._push_frame('{"a": 1}', None)
    assert incoming._queue is None


def test_a_frame_is_written_as_its_text_and_readable_as_a_mapping():
    frame = Frame('{"id":1,"type":"put","value":{"name":"Rex"}}')
    assert frame["type"] == "put" and frame.get("value") == {"name": "Rex"} and frame.get("missing") is None


async def test_the_writer_keeps_frame_order_and_never_sends_two_at_once_when_a_send_blocks():
    """While a socket write is stuck (a client applying backpressure), later frames queue
    behind it and go out in order, one send at a time."""
    import asyncio

    from harper_resources.consumers import Resource

    sent, in_flight, most = [], [0], [0]
    release = asyncio.get_running_loop().create_future()

    async def send(message):
        in_flight[0] += 1
        most[0] = max(most[0], in_flight[0])
        if message.get("text") == '"block"' and not release.done():
            await release
        sent.append(message.get("text", message["type"]))
        in_flight[0] -= 1

    resource = Resource()
    resource._asgi_send = send
    stream = Stream()
    writer = asyncio.ensure_future(resource._write_then_close(stream))
    await asyncio.sleep(0)
    stream.send("first")
    stream.send("block")  # this write suspends
    for n in range(5):
        stream.send(n)  # these must wait behind it
    await asyncio.sleep(0.01)
    assert sent == ['"first"']
    release.set_result(None)
    await asyncio.sleep(0.01)
    stream.close()
    await writer
    assert sent == ['"first"', '"block"', "0", "1", "2", "3", "4", "websocket.close"]
    assert most[0] == 1, "never two sends on one socket at once"


async def test_while_the_first_frames_load_nothing_is_written_ahead_of_them():
    import asyncio

    from harper_resources.consumers import Resource

    sent = []

    async def send(message):
        sent.append(message.get("text", message["type"]))

    resource = Resource()
    resource._asgi_send = send
    stream = Stream()
    stream._hold()
    writer = asyncio.ensure_future(resource._write_then_close(stream))
    await asyncio.sleep(0)  # the writer is idle, waiting
    stream.send({"status": "pulse"})
    await asyncio.sleep(0.01)
    assert sent == [], "held: not even an idle writer may send"
    stream._release([Frame('{"type":"put"}')])
    await asyncio.sleep(0.01)
    stream.close()
    await writer
    assert sent == ['{"type":"put"}', '{"status":"pulse"}', "websocket.close"]


@pytest.mark.parametrize(
    "refusal",
    [
        ConnectionResetError("the client is gone"),  # uvicorn's ClientDisconnected is an OSError
        # uvicorn, once it closed the socket itself (the client's close frame, its keepalive
        # timing out) before the application saw the disconnect:
        RuntimeError("Unexpected ASGI message 'websocket.send', after sending 'websocket.close'."),
    ],
)
async def test_a_send_to_a_departed_client_ends_the_stream_quietly(caplog, refusal):
    import asyncio

    from harper_resources.consumers import Resource

    sends = []

    async def departed(message):
        sends.append(message)
        raise refusal

    resource = Resource()
    resource._asgi_send = departed
    stream = Stream()
    writer = asyncio.ensure_future(resource._write_then_close(stream))
    await asyncio.sleep(0)
    with caplog.at_level(logging.WARNING, logger="harper_resources"):
        for n in range(5):
            stream.send(n)
        await asyncio.wait_for(writer, 1)
    data = [message for message in sends if message["type"] == "websocket.send"]
    assert stream.closed and len(data) == 1, "one failed send ends it; later frames are not tried"
    assert caplog.text == ""
