"""Routing helpers: a URLRouter whose unknown paths close with 4404 instead of an error."""

from __future__ import annotations

from typing import Any

from channels.routing import URLRouter
from django.urls import re_path

from . import closing
from .exceptions import ResourceNotFound


async def not_found(scope: Any, receive: Any, send: Any) -> None:
    """ASGI app for a WebSocket path no resource answers: accept (with the first
    subprotocol offered, as a resource does by default), then close 4404."""
    if (await receive())["type"] != "websocket.connect":
        return
    error = ResourceNotFound()
    closing.log_refusal(scope, scope.get("user"), error.code)
    offered = scope.get("subprotocols") or ()
    await send({"type": "websocket.accept", "subprotocol": offered[0] if offered else None})
    await closing.close(send, error.code, error.reason)


class ResourceRouter(URLRouter):  # type: ignore[misc]
    """``URLRouter(routes)`` that answers any other WebSocket path with close 4404."""

    def __init__(self, routes: list[Any]) -> None:
        super().__init__([*routes, re_path(r"", not_found)])  # type: ignore[arg-type]
