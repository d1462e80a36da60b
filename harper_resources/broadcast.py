"""After-commit broadcasting of record changes and publishes.

``post_save``/``post_delete`` of a table model version the change and encode its frame
inside the changing transaction: ``versions.assign`` gives the record its next version
(in commit order, across processes), and a ``put`` carries the row read back from the
database, so ``update_fields``, ``F()`` expressions, defaults and concurrent writers are
exactly what is stored. A ``transaction.on_commit`` callback then hands the frame to
``submit``: a rolled-back transaction sends nothing, and several saves in one
transaction go out in order when it commits.

``submit`` never blocks and never raises: saving must not fail, wait or lose its write
because broadcasting failed. With a process-local layer the frame goes straight to this
process's hubs. With a layer that reaches other processes (Redis) it goes to a single
background sender per process, which owns one event loop (so one connection pool, not
one per save), sends in submission order, and is flushed when the process exits.
Delivery order across processes is not commit order; the versions are, and hubs and
streams drop a state older than one they delivered.
"""

from __future__ import annotations

import asyncio
import atexit
import collections
import concurrent.futures
import logging
import os
import threading
from collections.abc import Callable, Iterable
from typing import Any, ParamSpec, TypeVar

from django.db import models, transaction

from . import capture, changelog, discovery, hub, metrics, protocol, tables, versions
from .conf import settings
from .streams import Frame

logger = logging.getLogger("harper_resources")


# Signal receivers ----------------------------------------------------------------------


def on_post_save(
    sender: type[models.Model], instance: models.Model, raw: bool = False, using: str = "default", **kwargs: Any
) -> None:
    """Broadcast a ``put`` of the saved row (as stored, read back) once the current
    transaction commits, to the subscribers of each table the save changed."""
    if raw:
        return
    for table in tables.tables_of(sender):
        if not capture.captured(table, using):  # its trigger does it
            _record_change(table, instance.pk, using, deleted=False)


def on_post_delete(sender: type[models.Model], instance: models.Model, using: str = "default", **kwargs: Any) -> None:
    """Broadcast a ``delete`` of ``instance`` once the current transaction commits."""
    # Django sends post_delete once per deleted row, the parent rows of a multi-table
    # child included: each table is handled by its own signal.
    if tables.is_table(sender) and not capture.captured(sender, using):
        _record_change(sender._meta.concrete_model or sender, instance.pk, using, deleted=True)


#: Set on a database connection once it has versioned a change (the app's table is there).
_VERSIONS_OK = "_harper_resources_versions_ok"
#: Set on a database connection by each change it versions: ``(model, key, row read back)``
#: (``take_saved_row``).
_SAVED_ROW = "_harper_resources_saved_row"


def take_saved_row(using: str) -> tuple[type[models.Model], str, models.Model | None] | None:
    """What the last change versioned on this thread's connection to ``using`` read back,
    ``(model, key, row)`` (row None for a delete), and forget it; None if nothing since
    the last call. A REST write answers with that row: the state its subscribers get,
    read in its own transaction, without reading it again."""
    connection = transaction.get_connection(using)
    saved: tuple[type[models.Model], str, models.Model | None] | None = connection.__dict__.pop(_SAVED_ROW, None)
    return saved


def _record_change(model: type[models.Model], pk: Any, using: str, *, deleted: bool) -> None:
    """Version the change, encode its frame from the stored row, and broadcast it after
    commit. Never raises: a failure here is logged and counted, and the save stands."""
    connection = transaction.get_connection(using)
    try:
        # Autocommit (a save outside ``atomic``): the save has committed; the version,
        # the read-back and the log entry share one transaction of their own (one
        # commit, not three). Reading after the version is enough: a newer write
        # committed before the read is shown, and its own version is greater.
        # Inside the caller's transaction: a savepoint until this connection has
        # versioned a change once, so a failure here (a missing migration, say) cannot
        # break the caller's transaction. Not after: PostgreSQL slows down past 64
        # savepoints in one transaction, and a transaction of thousands of saves is
        # ordinary.
        savepoint = connection.in_atomic_block and not getattr(connection, _VERSIONS_OK, False)
        with transaction.atomic(using=using, savepoint=savepoint):
            change = _versioned_frame(model, pk, using, deleted)
            transaction.on_commit(lambda: submit(*change), using=using, robust=True)
        setattr(connection, _VERSIONS_OK, True)
    except Exception:
        metrics.throttled_warning(
            "encode_failed",
            "harper_resources: could not record the change of %s %r; not broadcast",
            model._meta.label,
            pk,
            exc_info=True,
        )


def _versioned_frame(model: type[models.Model], pk: Any, using: str, deleted: bool) -> tuple[tuple[str, str], Frame]:
    table, key = tables.table_name(model), tables.key(pk)
    groups = record_groups(table, key)
    # The version first: its row lock makes every later change of this record wait, so
    # the row read next is the state this version stands for (or a newer one whose own
    # frame comes later with a greater version).
    version = versions.assign(using, table, key, deleted=deleted)
    kind = protocol.DELETE
    if deleted:
        text = protocol.delete_frame(pk, version)
    else:
        row = tables.read_row(model, pk, using)
        if row is None:  # deleted by another transaction since this save
            versions.mark_deleted(using, table, key)
            text = protocol.delete_frame(pk, version)
        else:
            kind, text = protocol.PUT, tables.put_frame(row, version)
        setattr(transaction.get_connection(using), _SAVED_ROW, (model, key, row))
    changelog.write(using, table, groups[1], kind, version, text)
    return groups, Frame(text, groups[1], version)


def record_groups(table: str, key: str) -> tuple[str, str]:
    """The groups a frame of record ``key`` goes to: its table's and its own."""
    return protocol.table_group(table), protocol.record_group(table, key)


def broadcast_rows(model: type[models.Model], pks: Iterable[Any], *, using: str = "default") -> None:
    """Broadcast the current state of rows a bulk operation changed (``QuerySet.update()``,
    ``bulk_create()``, ``bulk_update()``, raw SQL), as a ``save()`` would: each row that
    exists goes out as a ``put``, each that does not as a ``delete``. For databases
    without capture (``capture = "database"`` does this by itself on PostgreSQL). Call
    it after the bulk operation, in the same transaction or after it."""
    pks = list(pks)
    for table in tables.tables_of(model):
        if capture.captured(table, using):
            continue
        existing = set(table._base_manager.using(using).filter(pk__in=list(pks)).values_list("pk", flat=True))
        for pk in pks:
            _record_change(table, pk, using, deleted=pk not in existing)


# Publish -------------------------------------------------------------------------------


def publish(target: Any, pk: Any, message: Any, *, using: str | None = None) -> None:
    """Send ``message`` as a ``message`` frame to subscribers of record ``pk`` of
    ``target``, in every process: with a model class or instance, to the subscribers of
    every resource of that model; with a ``Resource`` class, only to that resource's own
    (and those of resources that list it in ``accepts_messages_from``). The record is
    not changed.

    For sync code (views, admin actions, tasks); resources use ``await self.publish()``.
    Inside ``transaction.atomic`` it is sent when the transaction commits, and not at all
    if it rolls back. Raises ``ValueError`` if ``pk`` can never be a key of the model,
    ``TypeError`` if ``message`` cannot be encoded as JSON.
    """
    groups, frame = message_event(target, pk, message)
    transaction.on_commit(lambda: submit(groups, frame), using=using, robust=True)


def message_event(target: Any, pk: Any, message: Any) -> tuple[tuple[str, str], Frame]:
    """The groups and encoded ``message`` frame of a publish to record ``pk`` of ``target``;
    the frame's ``source`` is the resource class's identity (None for a model)."""
    source: str | None = None
    if isinstance(target, models.Model):
        model: type[models.Model] | None = type(target)
    elif isinstance(target, type) and issubclass(target, models.Model):
        model = target
    else:
        model = getattr(target, "model", None)
        source = target.message_source()
    if model is None:
        table, key = target.table_name(), tables.key(pk)
    else:
        pk = tables.parse_pk(model, pk)
        table, key = tables.table_name(model), tables.key(pk)
    return record_groups(table, key), Frame(protocol.message_frame(pk, message, protocol.now_ms()), source=source)


# Delivery ------------------------------------------------------------------------------


def submit(groups: Iterable[str], frame: Frame) -> None:
    """Hand ``frame`` to the subscribers of each of ``groups``. Never blocks or raises."""
    try:
        layer = hub.channel_layer()
        if hub.is_process_local(layer):
            groups = list(groups)
            discovery.warn_if_unreachable(groups, message=frame.record is None)
            for group in groups:
                hub.deliver_locally(group, frame)
        else:
            events = [
                (group, protocol.event(group, frame.text, frame.record, frame.version, frame.source))
                for group in groups
            ]
            _sender().submit(events, message=frame.record is None)
    except Exception:
        metrics.throttled_warning("broadcast_failed", "harper_resources: broadcast failed", exc_info=True)


#: The channel-layer events of one change or publish: (group, message) pairs.
Events = list[tuple[str, dict[str, Any]]]

#: Seconds one group_send may take before the sender gives up on it.
SEND_TIMEOUT = 5.0

_P = ParamSpec("_P")
_T = TypeVar("_T")


class _ExitSafeExecutor(concurrent.futures.ThreadPoolExecutor):
    """The sender loop's default executor, where asyncio resolves host names.

    A thread pool, except when it refuses work: at interpreter exit ``concurrent.futures``
    stops taking any before ``atexit`` runs the exit flush, and the call then runs inline
    in the sender thread. That blocks only the sender's own loop, for a DNS lookup, where
    failing it would lose every change not yet sent. While the pool takes work, a lookup
    that hangs still cannot hold the sender past ``SEND_TIMEOUT``.
    """

    def submit(self, fn: Callable[_P, _T], /, *args: _P.args, **kwargs: _P.kwargs) -> concurrent.futures.Future[_T]:
        try:
            return super().submit(fn, *args, **kwargs)
        except RuntimeError:  # "cannot schedule new futures after interpreter shutdown"
            future: concurrent.futures.Future[_T] = concurrent.futures.Future()
            try:
                future.set_result(fn(*args, **kwargs))
            except Exception as exc:
                future.set_exception(exc)
            return future


class LayerSender:
    """One background thread with its own event loop that sends events to the channel
    layer, each kind in submission order.

    Record changes and published messages wait in queues of their own, each bounded
    (``maxsize``: ``BROADCAST_QUEUE_SIZE``; ``message_maxsize``: ``PUBLISH_QUEUE_SIZE``),
    and a message is sent only while no change waits: publishes, which clients can
    cause, never delay a change or take its room. Beyond its bound an event is dropped,
    counted (``broadcast_dropped``, ``publish_dropped``) and logged at most every 10 s.

    The thread belongs to the process that started it: a ``fork()`` child has the queue
    but not the thread (``alive()`` is False there), and ``_sender()`` replaces it.
    """

    def __init__(self, alias: str, maxsize: int, message_maxsize: int = 1000) -> None:
        self.alias = alias
        self.maxsize = maxsize
        self.message_maxsize = message_maxsize
        self.pid = os.getpid()
        self._queue: collections.deque[Events] = collections.deque()
        self._messages: collections.deque[Events] = collections.deque()
        self._pending = 0
        self._idle = threading.Condition()
        self._loop = asyncio.new_event_loop()
        self._loop.set_default_executor(_ExitSafeExecutor(thread_name_prefix="harper-broadcast-executor"))
        self._wakeup = asyncio.Event()
        self._thread = threading.Thread(target=self._run, name="harper-broadcast", daemon=True)
        self._thread.start()

    def submit(self, events: Events, *, message: bool = False) -> None:
        """Queue ``events`` (of a published message when ``message``, else of a change)."""
        with self._idle:
            if message:
                if len(self._messages) >= self.message_maxsize:
                    metrics.throttled_warning(
                        "publish_dropped", "harper_resources: publish queue full; message dropped"
                    )
                    return
                self._messages.append(events)
            else:
                if len(self._queue) >= self.maxsize:
                    metrics.throttled_warning(
                        "broadcast_dropped", "harper_resources: broadcast queue full; change dropped"
                    )
                    return
                self._queue.append(events)
            self._pending += 1
        self._loop.call_soon_threadsafe(self._wakeup.set)

    def alive(self) -> bool:
        """True while this process's sender thread runs its loop."""
        return self.pid == os.getpid() and self._thread.is_alive()

    def take_queued(self) -> list[tuple[Events, bool]]:
        """Remove and return what waits to be sent, changes first, each with whether it
        is a message (from a sender whose thread died)."""
        with self._idle:
            queued = [(events, False) for events in self._queue] + [(events, True) for events in self._messages]
            self._queue.clear()
            self._messages.clear()
            self._pending = 0
            self._idle.notify_all()
        return queued

    def close_loop(self) -> None:
        """Close the loop of a sender whose thread died, and with it the layer
        connections made on it (channels_redis runs the loop to close them)."""
        try:
            self._loop.close()
        except Exception:
            logger.warning("harper_resources: closing a dead broadcast sender's loop failed", exc_info=True)

    def flush(self, timeout: float) -> bool:
        """Wait until every submitted event was handed to the layer. False on timeout."""
        with self._idle:
            return self._idle.wait_for(lambda: self._pending == 0, timeout)

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)
        self._loop.run_until_complete(self._send_forever())

    async def _send_forever(self) -> None:
        from channels.layers import get_channel_layer

        while True:
            await self._wakeup.wait()
            self._wakeup.clear()
            while self._queue or self._messages:
                events = self._queue.popleft() if self._queue else self._messages.popleft()
                layer = get_channel_layer(self.alias)
                for group, message in events:
                    try:
                        # A layer that hangs (a stalled Redis) must not wedge the sender:
                        # past the timeout this change is counted as failed and the next goes.
                        await asyncio.wait_for(layer.group_send(group, message), SEND_TIMEOUT)
                    except Exception:
                        metrics.throttled_warning(
                            "broadcast_failed", "harper_resources: channel layer group_send failed", exc_info=True
                        )
                with self._idle:
                    self._pending -= 1
                    self._idle.notify_all()


_sender_instance: LayerSender | None = None
_sender_lock = threading.Lock()


def _sender() -> LayerSender:
    """This process's sender for the configured layer. A new one replaces a sender whose
    thread died (it sends what the dead one had queued) or that a ``fork()`` copied from
    the parent (whose own thread sends what it had queued); either is logged once."""
    global _sender_instance
    alias = settings.CHANNEL_LAYER
    sender = _sender_instance
    if sender is None or sender.alias != alias or not sender.alive():
        with _sender_lock:
            old = _sender_instance
            if old is None or old.alias != alias or not old.alive():
                if old is None:
                    atexit.register(flush)
                sender = _sender_instance = LayerSender(
                    alias, settings.BROADCAST_QUEUE_SIZE, settings.PUBLISH_QUEUE_SIZE
                )
                if old is not None and not old.alive():
                    _take_over(old, sender)
            else:
                sender = old
    return sender


def _take_over(old: LayerSender, new: LayerSender) -> None:
    if old.pid != os.getpid():
        logger.info("harper_resources: a forked process starts a broadcast sender of its own")
        return
    queued = old.take_queued()
    logger.error(
        "harper_resources: the broadcast sender thread died; a new one sends the %d broadcast(s) it had queued",
        len(queued),
    )
    for events, message in queued:
        new.submit(events, message=message)
    # Not on this thread, which may be running an event loop of its own.
    threading.Thread(target=old.close_loop, name="harper-broadcast-close", daemon=True).start()


def _after_fork_in_child() -> None:
    global _sender_lock
    _sender_lock = threading.Lock()  # another thread of the parent may have held it


os.register_at_fork(after_in_child=_after_fork_in_child)


def flush(timeout: float | None = None) -> bool:
    """Wait until this process's queued broadcasts reached the channel layer (starting a
    new sender first if the thread died).

    Runs at interpreter exit, so a script that saves and exits still delivers. Returns
    False if ``timeout`` (default ``EXIT_FLUSH_TIMEOUT``) passed first.
    """
    sender = _sender_instance
    if sender is None or sender.pid != os.getpid():
        return True  # nothing queued by this process (a fork child's copy is its parent's)
    if not sender.alive():
        try:
            sender = _sender()
        except RuntimeError:  # no new thread at interpreter shutdown
            logger.warning("harper_resources: exiting with broadcasts not yet sent")
            return False
    ok = sender.flush(settings.EXIT_FLUSH_TIMEOUT if timeout is None else timeout)
    if not ok:
        logger.warning("harper_resources: exiting with broadcasts not yet sent")
    return ok
