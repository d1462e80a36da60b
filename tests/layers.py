"""Channel layers for tests of the cross-process sending path, without a Redis."""

from __future__ import annotations

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
