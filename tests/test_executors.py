"""The handshake thread (``executors.DatabaseThread``): results, errors, contextvars and
cancellation behave as with ``database_sync_to_async``."""

from __future__ import annotations

import asyncio
import contextvars
import threading

import pytest

from harper_resources.executors import DatabaseThread, ProcessPool

request_id: contextvars.ContextVar[str] = contextvars.ContextVar("request_id", default="none")


async def test_a_call_returns_its_result_from_another_thread():
    thread = DatabaseThread("test-db")
    assert await thread.run(lambda a, b: (a + b, threading.current_thread().name), 2, 3) == (5, "test-db")


async def test_a_call_raises_its_exception_in_the_caller():
    thread = DatabaseThread("test-db")

    def fail():
        raise LookupError("no such session")

    with pytest.raises(LookupError, match="no such session"):
        await thread.run(fail)


async def test_a_call_sees_the_callers_contextvars_and_cannot_change_them():
    thread = DatabaseThread("test-db")
    request_id.set("r-1")

    def read_and_set():
        seen = request_id.get()
        request_id.set("changed in the thread")
        return seen

    assert await thread.run(read_and_set) == "r-1"
    assert request_id.get() == "r-1"


async def test_a_cancelled_caller_drops_a_call_not_started_and_waits_for_a_running_one():
    thread = DatabaseThread("test-db")
    running, release = threading.Event(), threading.Event()
    ran: list[str] = []

    def first():
        running.set()
        release.wait(5)
        ran.append("first")

    first_call = asyncio.ensure_future(thread.run(first))
    second_call = asyncio.ensure_future(thread.run(ran.append, "second"))
    await asyncio.get_running_loop().run_in_executor(None, running.wait, 5)
    second_call.cancel()
    with pytest.raises(asyncio.CancelledError):
        await second_call  # at once: it had not started
    first_call.cancel()
    await asyncio.sleep(0.05)
    assert not first_call.done(), "a running call ends before its caller's cancellation goes on"
    release.set()
    with pytest.raises(asyncio.CancelledError):
        await first_call
    assert await thread.run(ran.append, "third") is None
    assert ran == ["first", "third"], "the call cancelled before it started never ran"


async def test_a_caller_cancelled_while_its_call_runs_gets_the_cancellation_not_the_calls_error():
    thread = DatabaseThread("test-db")
    running, release = threading.Event(), threading.Event()

    def fails_later():
        running.set()
        release.wait(5)
        raise RuntimeError("database went away")

    call = asyncio.ensure_future(thread.run(fails_later))
    await asyncio.get_running_loop().run_in_executor(None, running.wait, 5)
    call.cancel()
    await asyncio.sleep(0.05)
    release.set()
    with pytest.raises(asyncio.CancelledError):
        await call


def test_a_process_pool_follows_a_change_of_its_size_setting():
    # WRITE_THREADS and PASSWORD_HASH_THREADS are read at every use (override_settings).
    size = [2]
    pool = ProcessPool("harper-test", lambda: size[0])
    first = pool()
    assert pool() is first and first._max_workers == 2
    size[0] = 3
    resized = pool()
    assert resized is not first and resized._max_workers == 3
    with pytest.raises(RuntimeError):  # the old pool was shut down (its running calls end first)
        first.submit(print)
    resized.shutdown()
