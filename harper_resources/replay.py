"""Catch-up from the change log: changes whose broadcast never reached this process.

A broadcast can be lost after its change committed: the channel layer was down, or the
writing process died before its sender handed the change over. Every hub therefore
reads the change log every ``REPLAY_INTERVAL`` seconds for rows it has not seen and
dispatches them like frames from the layer; the hub's version check drops the ones
already delivered, so a replay is never a duplicate or a step back.

Rows are read by id. A transaction that took an id early may commit after later ids
are visible (PostgreSQL): ids skipped over are asked for again for ``GAP_SECONDS``.
The hubs also prune the log now and then (``PRUNE_SECONDS``), off the event loop.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar

from django.db import DEFAULT_DB_ALIAS, connections

from . import capture, changelog, executors, metrics, protocol, tables
from .conf import settings
from .streams import Frame

if TYPE_CHECKING:
    from .hub import Hub

T = TypeVar("T")

#: How long an id skipped over is asked for again (a transaction that slow is rare).
GAP_SECONDS = 60.0
#: At most this many skipped ids are remembered.
MAX_GAPS = 10_000
#: How often a hub prunes the log.
PRUNE_SECONDS = 60.0
#: Catch-up starts at log rows this much (ms) older than the hub's first listener:
#: versions come from the writers' clocks, which may be a little behind this one's.
START_MARGIN = 5_000.0


#: This process's change-log reader: one thread, shared by its hubs.
_reader_thread = executors.ProcessPool("harper-replay", lambda: 1)


async def _in_thread(fn: Callable[..., T], *args: Any) -> T:
    """Run a database call in the change-log reader thread, not the thread that
    ``database_sync_to_async`` shares with user code. The thread keeps its database
    connections between calls (it reads every ``REPLAY_INTERVAL``, and on every NOTIFY
    under load: connecting each time would cost more than the reads); one that failed
    is closed, and opened again by the next call."""

    def call() -> T:
        try:
            return fn(*args)
        except Exception:
            connections.close_all()
            raise

    return await asyncio.get_running_loop().run_in_executor(_reader_thread(), call)


async def run(hub: Hub, started: float, using: str = DEFAULT_DB_ALIAS) -> None:
    """Dispatch to ``hub`` every logged change it has not seen, until cancelled.

    ``started``: when (ms) the hub's first listener came. Catch-up starts at the log's
    rows from ``START_MARGIN`` before that, not at its newest row when this first reads
    it: a change committed (and its broadcast lost) between the two is caught up too.
    What is older than a group's first listener the hub drops (``Hub.replay``)."""
    interval = float(settings.REPLAY_INTERVAL)
    try:
        last_id = await _in_thread(changelog.newest_id_before, using, started - START_MARGIN)
    except Exception:
        metrics.throttled_warning("replay_failed", "harper_resources: cannot read the change log", exc_info=True)
        return
    gaps: dict[int, float] = {}
    next_prune = time.monotonic() + PRUNE_SECONDS
    wake = asyncio.Event()
    listener = None
    if capture.supported(using) and tables.captured_tables():
        listener = asyncio.ensure_future(_listen(using, wake))
    try:
        await _replay_forever(hub, using, interval, last_id, gaps, next_prune, wake)
    finally:
        if listener is not None:
            listener.cancel()
        # The hub stopped (no listeners left): no connection stays open for it.
        _reader_thread().submit(connections.close_all)


async def _listen(using: str, wake: asyncio.Event) -> None:
    """Set ``wake`` on every NOTIFY of the capture triggers (PostgreSQL), reconnecting
    after failures, until cancelled."""
    import psycopg

    params = connections[using].get_connection_params()
    keywords = {name: str(value) for name, value in params.items() if isinstance(value, (str, int))}
    conninfo = psycopg.conninfo.make_conninfo("", **keywords)
    while True:
        try:
            async with await psycopg.AsyncConnection.connect(conninfo, autocommit=True) as connection:
                await connection.execute(f"LISTEN {capture.CHANNEL}")
                wake.set()  # anything committed while not listening
                async for _ in connection.notifies():
                    wake.set()
        except asyncio.CancelledError:
            raise
        except Exception:
            metrics.throttled_warning("listen_failed", "harper_resources: LISTEN failed; retrying", exc_info=True)
            await asyncio.sleep(1.0)


async def _replay_forever(
    hub: Hub, using: str, interval: float, last_id: int, gaps: dict[int, float], next_prune: float, wake: asyncio.Event
) -> None:
    while True:
        try:
            await asyncio.wait_for(wake.wait(), interval)
        except asyncio.TimeoutError:  # on 3.10 not the builtin TimeoutError
            pass
        wake.clear()
        try:
            entries = await _in_thread(changelog.read_after, using, last_id, list(gaps))
        except Exception:
            metrics.throttled_warning("replay_failed", "harper_resources: cannot read the change log", exc_info=True)
            continue
        now = time.monotonic()
        for entry in entries:
            late = gaps.pop(entry.id, None) is not None
            if entry.id > last_id:
                for skipped in range(last_id + 1, min(entry.id, last_id + 1 + MAX_GAPS)):
                    gaps[skipped] = now + GAP_SECONDS
                last_id = entry.id
            frame = Frame(entry.frame, entry.record, entry.version)
            hub.replay(protocol.table_group(entry.table), frame, late)
            hub.replay(entry.record, frame, late)
        for skipped, expires in list(gaps.items()):
            if expires < now:
                del gaps[skipped]
        if now > next_prune:
            next_prune = now + PRUNE_SECONDS
            try:
                await _in_thread(changelog.prune, using)
            except Exception:
                metrics.throttled_warning("prune_failed", "harper_resources: pruning the log failed", exc_info=True)
