"""Per-process fan-out: one channel-layer channel per event loop, shared by every
connection on that loop.

A connection subscribes a listener to a group (a table or a record). The hub joins the
layer group once, when the first local listener arrives, and leaves it when the last one
goes, so channel-layer work per change is O(processes), not O(connections). One receive
loop reads the hub's channel and hands each frame, decoded once into a ``Frame``, to the
local listeners of its group.

With a process-local layer (the in-memory layer) there is no other process to reach:
the broadcaster then hands frames straight to the hubs (``dispatch``) and the hub never
touches the layer.
"""

from __future__ import annotations

import asyncio
import enum
import logging
import threading
from collections.abc import Callable

from channels.layers import BaseChannelLayer, InMemoryChannelLayer, get_channel_layer

from . import metrics, protocol
from .conf import settings
from .streams import Frame

logger = logging.getLogger("harper_resources")

Listener = Callable[[Frame], None]

#: Prefix of each hub's channel name (for channel_capacity patterns).
HUB_CHANNEL_PREFIX = "harper-hub."

_hubs: dict[asyncio.AbstractEventLoop, Hub] = {}
_hubs_lock = threading.Lock()


def channel_layer() -> BaseChannelLayer | None:
    """The layer named by ``HARPER_RESOURCES_CHANNEL_LAYER`` (None if not configured)."""
    return get_channel_layer(settings.CHANNEL_LAYER)


def is_process_local(layer: BaseChannelLayer | None) -> bool:
    """True if ``layer`` cannot carry messages to another process."""
    return layer is None or isinstance(layer, InMemoryChannelLayer)


def get_hub() -> Hub:
    """The hub of the running event loop, started on first use."""
    loop = asyncio.get_running_loop()
    with _hubs_lock:
        hub = _hubs.get(loop)
        if hub is None:
            hub = _hubs[loop] = Hub(loop, channel_layer())
        return hub


class Membership(enum.Enum):
    """Where a hub's channel stands in a layer group (a group absent from the hub's
    ``_membership`` is left). Only the membership worker changes it."""

    JOINING = "joining"  # group_add in flight; subscribers wait for it
    JOINED = "joined"  # group_add returned: the layer has the channel in the group
    LEAVING = "leaving"  # group_discard in flight; a subscriber waits for the join after it


def running_hubs() -> list[Hub]:
    """Every hub of this process that has listeners."""
    with _hubs_lock:
        return list(_hubs.values())


class Hub:
    """Listeners by group for one event loop, and that loop's channel-layer membership.

    Membership changes go through one worker task that reconciles what the layer has
    (``_membership``) with what the listeners need, one group at a time. So a thousand
    clients leaving at once cost at most one ``group_discard`` per group and never more
    than one layer call in flight per hub (no connection-pool exhaustion), and a join
    never overtakes a leave of the same group. A subscriber waits for a group_add that
    returns after it subscribed; a leave in flight never ends that wait.
    """

    def __init__(self, loop: asyncio.AbstractEventLoop, layer: BaseChannelLayer | None) -> None:
        self.loop = loop
        self.layer = layer
        self.local_only = is_process_local(layer)
        self.channel_name: str | None = None
        self._listeners: dict[str, set[Listener]] = {}
        # Per group, the newest version delivered of each record: an older state, or the
        # same one again (a replay from the change log), is dropped for every listener.
        self._versions: dict[str, dict[str, float]] = {}
        # Per group, versions shown in first frames: an older state arriving later is
        # dropped (the same one is not: other listeners may not have it yet).
        self._noted: dict[str, dict[str, float]] = {}
        self._replay: asyncio.Task[None] | None = None
        # Per group, when (ms) its first listener came: changes older than that were
        # made before anyone here listened, and are not replayed to it.
        self._replay_from: dict[str, float] = {}
        self._membership: dict[str, Membership] = {}
        self._dirty: dict[str, None] = {}  # an ordered set of groups to reconcile
        self._renew: set[str] = set()  # joined groups to join again (expiry, layer restart)
        self._join_waiters: dict[str, list[asyncio.Future[None]]] = {}
        self._worker: asyncio.Task[None] | None = None
        self._started: asyncio.Task[None] | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self._stopped = False

    # Subscriptions ---------------------------------------------------------------------

    async def subscribe(self, group: str, listener: Listener) -> None:
        """Deliver every frame of ``group`` to ``listener`` until ``unsubscribe``.

        Returns once the layer membership is in place, so a change committed after
        this returns is delivered. Raises if the channel layer fails.
        """
        if group not in self._listeners:
            self._replay_from[group] = protocol.now_ms()
        self._listeners.setdefault(group, set()).add(listener)
        if self._replay is None and settings.REPLAY_INTERVAL:
            from . import replay

            self._replay = self.loop.create_task(replay.run(self, protocol.now_ms()))
            self._tasks.append(self._replay)
        if self.local_only or self._membership.get(group) is Membership.JOINED:
            return
        waiter = self.loop.create_future()
        self._join_waiters.setdefault(group, []).append(waiter)
        self._mark(group)
        try:
            await waiter
        except BaseException:
            self.unsubscribe(group, listener)
            raise

    def unsubscribe(self, group: str, listener: Listener) -> None:
        """Stop delivering ``group`` to ``listener``; leaves the layer group with the last
        one, and a ``subscribe`` of the group still waiting then raises RuntimeError."""
        listeners = self._listeners.get(group)
        if listeners is None or listener not in listeners:
            return
        listeners.discard(listener)
        if listeners:
            return
        del self._listeners[group]
        self._versions.pop(group, None)
        self._noted.pop(group, None)
        self._replay_from.pop(group, None)
        for waiter in self._join_waiters.pop(group, ()):
            if not waiter.done():
                waiter.set_exception(RuntimeError(f"unsubscribed from {group} before it was joined"))
        if self.local_only:
            self._stop_when_idle()
        else:
            self._mark(group)

    # Delivery --------------------------------------------------------------------------

    def dispatch(self, group: str, frame: Frame) -> None:
        """Hand ``frame`` of ``group`` to its local listeners, unless it shows a state of
        its record older than one this group already delivered (then it is dropped and
        counted as ``stale_dropped``)."""
        listeners = self._listeners.get(group)
        if not listeners:
            return
        record = frame.record
        if record is not None:
            known = self._versions.get(group)
            if known is None:
                known = self._versions[group] = {}
            newest = known.get(record)
            if newest is not None and frame.version <= newest:
                if frame.version < newest:
                    metrics.count("stale_dropped")
                return
            noted = self._noted.get(group)
            if noted is not None and frame.version < noted.get(record, -1.0):
                metrics.count("stale_dropped")
                return
            known[record] = frame.version
        for listener in tuple(listeners):
            try:
                listener(frame)
            except Exception:
                metrics.throttled_error("listener_failed", "harper_resources: a listener failed", exc_info=True)

    def replay(self, group: str, frame: Frame, late: bool) -> None:
        """Dispatch a change read from the change log, unless it was made before this
        group had listeners here (``late``: a row passed over while its transaction was
        still open, which may have committed after that)."""
        start = self._replay_from.get(group)
        if start is None or (frame.version < start and not late):
            return
        self.dispatch(group, frame)

    def note_versions(self, group: str, frames: list[Frame]) -> None:
        """Record the versions of first frames a listener of ``group`` was shown, so
        older states still in flight are dropped for every listener of the group."""
        if group not in self._listeners:
            return
        known = self._noted.get(group)
        if known is None:
            known = self._noted[group] = {}
        for frame in frames:
            record = frame.record
            if record is not None and frame.version > known.get(record, -1.0):
                known[record] = frame.version

    # Channel-layer membership ----------------------------------------------------------

    def _mark(self, group: str) -> None:
        self._dirty[group] = None
        if self._worker is None:
            self._worker = self.loop.create_task(self._reconcile())

    async def _reconcile(self) -> None:
        while self._dirty:
            group = next(iter(self._dirty))
            del self._dirty[group]
            renew = group in self._renew
            self._renew.discard(group)
            state = self._membership.get(group)
            if group in self._listeners:
                if state is None or renew:
                    await self._join(group)
            elif state is Membership.JOINED:
                await self._leave(group)
        self._worker = None
        self._stop_when_idle()

    async def _join(self, group: str) -> None:
        """group_add; then resolve the group's waiters with its outcome. A renewal of a
        joined group stays joined if it fails (the layer's expiry is the backstop)."""
        assert self.layer is not None
        renewing = self._membership.get(group) is Membership.JOINED
        if not renewing:
            self._membership[group] = Membership.JOINING
        try:
            channel = await self._ensure_started()
            await self.layer.group_add(group, channel)
        except Exception as exc:
            if not renewing:
                del self._membership[group]
            self._membership_failed(group)
            self._resolve_waiters(group, exc)
            return
        self._membership[group] = Membership.JOINED
        self._resolve_waiters(group, None)

    async def _leave(self, group: str) -> None:
        """group_discard; the group counts as left even if it fails (the layer's group
        expiry ends it). Waiters that came meanwhile wait for the join that follows."""
        assert self.layer is not None
        self._membership[group] = Membership.LEAVING
        try:
            await self.layer.group_discard(group, self.channel_name)
        except Exception:
            self._membership_failed(group)
        del self._membership[group]

    def _membership_failed(self, group: str) -> None:
        metrics.throttled_warning(
            "group_membership_failed",
            "harper_resources: channel layer group join/leave failed for %s",
            group,
            exc_info=True,
        )

    def _resolve_waiters(self, group: str, error: Exception | None) -> None:
        for waiter in self._join_waiters.pop(group, ()):
            if waiter.done():
                continue
            if error is not None:
                waiter.set_exception(error)
            else:
                waiter.set_result(None)

    async def _ensure_started(self) -> str:
        if self._started is None:
            self._started = self.loop.create_task(self._start())
        await asyncio.shield(self._started)
        assert self.channel_name is not None
        return self.channel_name

    async def _start(self) -> None:
        assert self.layer is not None
        self.channel_name = await self.layer.new_channel(prefix=HUB_CHANNEL_PREFIX)
        self._tasks.append(self.loop.create_task(self._receive_loop()))
        expiry = getattr(self.layer, "group_expiry", None)
        if expiry:
            self._tasks.append(self.loop.create_task(self._renew_loop(float(expiry))))

    async def _receive_loop(self) -> None:
        assert self.layer is not None and self.channel_name is not None
        delay = 0.0
        while True:
            try:
                message = await self.layer.receive(self.channel_name)
            except asyncio.CancelledError:
                raise
            except Exception:
                metrics.throttled_warning(
                    "hub_receive_failed", "harper_resources: channel layer receive failed; retrying", exc_info=True
                )
                delay = min(max(delay * 2, 0.1), 5.0)
                await asyncio.sleep(delay)
                # The layer may have lost our memberships (a restarted Redis keeps none):
                # join again before the next receive, or nothing would ever arrive.
                self._renew_all()
                continue
            delay = 0.0
            if message.get("type") == protocol.EVENT_TYPE:
                frame = Frame(
                    message["frame"],
                    message.get("record"),
                    message.get("version") or 0.0,
                    source=message.get("source"),
                )
                # From a loop callback, outside this task: a connection's writer can
                # then be entered to write the frame at once (``eager``).
                self.loop.call_soon(self.dispatch, message["group"], frame)

    async def _renew_loop(self, expiry: float) -> None:
        # Layers end memberships older than group_expiry; joining again renews them, so
        # connections that live longer than the expiry keep receiving.
        while True:
            await asyncio.sleep(max(expiry / 3, 0.2))
            self._renew_all()

    def _renew_all(self) -> None:
        for group, state in list(self._membership.items()):
            if state is Membership.JOINED:
                self._renew.add(group)
                self._mark(group)

    # Life cycle ------------------------------------------------------------------------

    def _stop_when_idle(self) -> None:
        if self._listeners or self._dirty or self._worker is not None or self._membership or self._stopped:
            return
        self._stopped = True
        with _hubs_lock:
            if _hubs.get(self.loop) is self:
                del _hubs[self.loop]
        for task in self._tasks:
            task.cancel()
        self._tasks.clear()
        if self._started is not None and not self._started.done():
            self._started.cancel()


def deliver_locally(group: str, frame: Frame) -> None:
    """Hand a frame to every hub of this process, each on its own loop (thread-safe)."""
    for hub in running_hubs():
        try:
            hub.loop.call_soon_threadsafe(hub.dispatch, group, frame)
        except RuntimeError:
            # The hub's loop is closed (a finished test, a stopped server): forget it.
            with _hubs_lock:
                if _hubs.get(hub.loop) is hub:
                    del _hubs[hub.loop]
