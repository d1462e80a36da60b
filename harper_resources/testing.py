"""Helpers for testing a project's resources, and a pytest plugin.

- ``ResourceCommunicator(application, path, user=..., headers=...)``: Channels'
  ``WebsocketCommunicator`` with frame-level reads: ``receive_frame()`` (the next frame,
  parsed), ``receive_put()``, ``receive_delete()``, ``receive_message()``,
  ``assert_nothing()``, ``receive_close()``.
- ``run_and_broadcast(fn, *args, **kwargs)``: run an ORM call from async test code and
  return once its broadcasts have left this process.

With pytest, enable the plugin in ``conftest.py`` (``pytest_plugins =
["harper_resources.testing"]``) for these fixtures:

- ``resource_communicator``: ``await resource_communicator(application, "/dog/1")``
  connects (failing the test if the handshake is refused) and disconnects at the end.
- ``in_memory_channel_layer``: the test runs on ``InMemoryChannelLayer`` (no Redis).

A save reaches a socket only when its transaction commits: use
``@pytest.mark.django_db(transaction=True)`` (``TransactionTestCase``) for socket tests,
or ``captureOnCommitCallbacks(execute=True)`` around saves in a ``TestCase``. See
docs/testing.md.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from typing import Any, TypeVar

from channels.db import database_sync_to_async
from channels.testing import WebsocketCommunicator

T = TypeVar("T")

#: Seconds a read waits by default: generous, as a loaded CI machine needs.
DEFAULT_TIMEOUT = 3.0


def _with_user(application: Any, user: Any) -> Any:
    """``application`` with ``scope["user"]`` set to ``user``, as the auth middleware would."""

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> Any:
        return await application({**scope, "user": user}, receive, send)

    return app


class ResourceCommunicator(WebsocketCommunicator):  # type: ignore[misc]
    """A WebSocket client for a resource path, in the test's event loop.

    ``application`` is what the server runs (your ``asgi.py``'s ``application``, a
    router, or ``SomeResource.as_asgi()``); ``user`` puts that user in the scope instead
    of going through the auth middleware (leave it out when ``application`` logs in by
    cookie or ``Authorization`` header). Reads fail the test (``AssertionError``) when
    the next frame is not what was asked for, or none comes within ``timeout``.
    """

    def __init__(
        self,
        application: Any,
        path: str,
        *,
        user: Any = None,
        headers: list[tuple[bytes, bytes]] | None = None,
        subprotocols: list[str] | None = None,
    ) -> None:
        if user is not None:
            application = _with_user(application, user)
        super().__init__(application, path, headers=headers, subprotocols=subprotocols)

    async def connect(self, timeout: float = DEFAULT_TIMEOUT) -> tuple[bool, Any]:
        """``(True, subprotocol)`` when accepted, ``(False, close code)`` when refused."""
        return await super().connect(timeout=timeout)  # type: ignore[no-any-return]

    async def receive_frame(self, timeout: float = DEFAULT_TIMEOUT) -> Any:
        """The next frame, parsed from JSON text."""
        # Waited for here: asgiref's receive_output cancels the application on a timeout,
        # and the socket must stay usable after a read that found nothing.
        if await self.receive_nothing(timeout=timeout):
            raise AssertionError(f"no frame within {timeout} s")
        output = await self.receive_output()
        if output["type"] == "websocket.close":
            raise AssertionError(f"the socket closed with {output.get('code', 1000)} instead of sending a frame")
        assert output["type"] == "websocket.send", output
        if output.get("text") is None:
            raise AssertionError("a binary frame arrived: read it with receive_output()")
        return json.loads(output["text"])

    async def _receive_type(self, kind: str, timeout: float) -> dict[str, Any]:
        frame = await self.receive_frame(timeout)
        if not isinstance(frame, dict) or frame.get("type") != kind:
            raise AssertionError(f"expected a {kind} frame, got {frame!r}")
        return frame

    async def receive_put(self, timeout: float = DEFAULT_TIMEOUT) -> dict[str, Any]:
        """The next frame, which must be a ``put``: ``frame["value"]`` is the record."""
        return await self._receive_type("put", timeout)

    async def receive_delete(self, timeout: float = DEFAULT_TIMEOUT) -> dict[str, Any]:
        """The next frame, which must be a ``delete``."""
        return await self._receive_type("delete", timeout)

    async def receive_message(self, timeout: float = DEFAULT_TIMEOUT) -> dict[str, Any]:
        """The next frame, which must be a ``message``: ``frame["value"]`` is what was published."""
        return await self._receive_type("message", timeout)

    async def assert_nothing(self, timeout: float = 0.3) -> None:
        """Fail if any frame (or a close) arrives within ``timeout`` seconds."""
        if not await self.receive_nothing(timeout=timeout):
            output = await self.receive_output()
            raise AssertionError(f"expected nothing, got {output!r}")

    async def receive_close(self, timeout: float = DEFAULT_TIMEOUT) -> int:
        """The close code the server sends next (fails on a frame instead)."""
        if await self.receive_nothing(timeout=timeout):
            raise AssertionError(f"no close within {timeout} s")
        output = await self.receive_output()
        assert output["type"] == "websocket.close", f"expected a close, got {output!r}"
        return int(output.get("code", 1000))


async def run_and_broadcast(fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    """Run ``fn(*args, **kwargs)`` (an ORM call: ``Dog.objects.create``, a function that
    saves) in Django's database thread, and return its result once the broadcasts of
    what it committed have been handed to the channel layer. Fails the test if that
    takes more than ``EXIT_FLUSH_TIMEOUT`` seconds."""
    from . import broadcast

    def call() -> T:
        result = fn(*args, **kwargs)
        assert broadcast.flush(), "the broadcasts did not reach the channel layer in time"
        return result

    return await database_sync_to_async(call)()  # type: ignore[no-any-return]


# pytest plugin ---------------------------------------------------------------------------

try:
    import pytest
    import pytest_asyncio
except ImportError:  # the helpers above work without pytest and pytest-asyncio
    pytest = None  # type: ignore[assignment]

if pytest is not None:

    @pytest_asyncio.fixture
    async def resource_communicator() -> AsyncIterator[Callable[..., Awaitable[ResourceCommunicator]]]:
        """``await resource_communicator(application, path, user=..., headers=...)``: a
        connected ``ResourceCommunicator``; every one is disconnected after the test."""
        opened: list[ResourceCommunicator] = []

        async def open_communicator(application: Any, path: str, **kwargs: Any) -> ResourceCommunicator:
            communicator = ResourceCommunicator(application, path, **kwargs)
            opened.append(communicator)
            connected, detail = await communicator.connect()
            assert connected, f"{path} refused the handshake ({detail})"
            return communicator

        yield open_communicator
        for communicator in opened:
            try:
                await communicator.disconnect(timeout=DEFAULT_TIMEOUT)
            except (Exception, asyncio.CancelledError):
                pass  # already closed, or the application already ended

    @pytest.fixture
    def in_memory_channel_layer() -> Iterator[None]:
        """Run the test on ``InMemoryChannelLayer``, whatever ``CHANNEL_LAYERS`` says."""
        from channels.layers import channel_layers
        from django.test import override_settings

        from .conf import settings

        layers = {settings.CHANNEL_LAYER: {"BACKEND": "channels.layers.InMemoryChannelLayer"}}
        channel_layers.backends.clear()
        with override_settings(CHANNEL_LAYERS=layers):
            yield
        channel_layers.backends.clear()
