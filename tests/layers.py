"""Channel layers for tests of the cross-process sending path and of group membership, without a Redis."""

from __future__ import annotations

import asyncio
import itertools
import threading
from typing import Any

from channels.layers import BaseChannelLayer


class RecordingLayer(BaseChannelLayer):
    """Remembers every group_send (from any thread), in order. Reaches no process."""

    sent: list[tuple[str, dict[str, Any]]] = []
    lock = threading.Lock()
    extensions = ["groups"]

    async def group_send(self, group: str, message: dict[str, Any]) -> None:
        with self.lock:
            RecordingLayer.sent.append((group, message))

    async def new_channel(self, prefix: str = "specific.") -> str:
        return prefix + "recording!1"

    async def group_add(self, group: str, channel: str) -> None:
        pass

    async def group_discard(self, group: str, channel: str) -> None:
        pass


class BrokenLayer(RecordingLayer):
    """Every group_send fails, like a channel layer whose Redis is down."""

    async def group_send(self, group: str, message: dict[str, Any]) -> None:
        raise ConnectionError("the layer is down")


class MembershipLayer(BaseChannelLayer):
    """Keeps group memberships (``groups``) and carries no messages. Each group_add and
    group_discard first waits (``delay``: ``latency`` seconds), then takes effect, like
    a layer whose server answers slowly."""

    extensions = ["groups"]
    latency = 0.2

    def __init__(self, **config: Any) -> None:
        super().__init__(**config)
        self.groups: dict[str, set[str]] = {}
        self._channels = itertools.count()

    async def delay(self) -> None:
        await asyncio.sleep(self.latency)

    async def new_channel(self, prefix: str = "specific.") -> str:
        return f"{prefix}membership!{next(self._channels)}"

    async def receive(self, channel: str) -> dict[str, Any]:
        await asyncio.get_running_loop().create_future()  # no message ever comes
        raise AssertionError("unreachable")

    async def group_add(self, group: str, channel: str) -> None:
        await self.delay()
        self.groups.setdefault(group, set()).add(channel)

    async def group_discard(self, group: str, channel: str) -> None:
        await self.delay()
        members = self.groups.get(group, set())
        members.discard(channel)
        if not members:
            self.groups.pop(group, None)

    def groups_of(self, channel: str | None) -> set[str]:
        """The groups ``channel`` is in now."""
        return {group for group, members in self.groups.items() if channel in members}
