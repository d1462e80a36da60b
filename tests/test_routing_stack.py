"""The routing stack hands over the inner application's coroutine instead of awaiting it
(``harper_resources.handover``): it must still route, and fail, as Channels' does."""

from __future__ import annotations

import pytest
from channels.auth import AuthMiddlewareStack
from channels.generic.websocket import AsyncWebsocketConsumer
from channels.routing import URLRouter
from channels.testing import WebsocketCommunicator
from django.urls import path, re_path

from harper_resources import Resource
from harper_resources.auth import OriginValidator, ResourceAuthMiddlewareStack
from harper_resources.routing import ResourceRouter

pytestmark = pytest.mark.django_db(transaction=True)


class Echo(AsyncWebsocketConsumer):
    """Accepts and sends the path it was routed to."""

    async def connect(self):
        await self.accept()
        await self.send(text_data=self.scope["path"])


async def opened(application, where):
    """What a client of ``where`` gets: the first text frame, or the close code."""
    communicator = WebsocketCommunicator(application, where)
    connected, code = await communicator.connect(timeout=3)
    try:
        if not connected:
            return code
        message = await communicator.receive_output(timeout=3)
        return message.get("text", message.get("code"))
    finally:
        await communicator.disconnect()


@pytest.mark.parametrize("wrap", [AuthMiddlewareStack, ResourceAuthMiddlewareStack], ids=["channels", "ours"])
async def test_a_nested_router_behind_middleware_that_finds_nothing_tries_the_next_route(wrap):
    router = ResourceRouter(
        [
            re_path(r"^chat/", wrap(URLRouter([path("room/", Echo.as_asgi())]))),
            path("chat/other", Echo.as_asgi()),
        ]
    )
    assert await opened(router, "/chat/room/") == "/chat/room/"
    assert await opened(router, "/chat/other") == "/chat/other", "the next route, as URLRouter does"
    assert await opened(router, "/chat/nowhere") == 4404


class Broken(Resource):
    def __init__(self, **initkwargs):
        raise LookupError("cannot make a connection object")


def raises_when_called(scope, receive, send):
    raise ZeroDivisionError("an inner application failing at once")


@pytest.mark.parametrize(
    ("application", "scope", "error"),
    [
        (ResourceRouter([path("dog/<str:id>", Echo.as_asgi())]), {"type": "websocket"}, "No 'path' key"),
        (OriginValidator(Echo.as_asgi()), {"type": "http"}, "non-WebSocket"),
        (ResourceAuthMiddlewareStack(raises_when_called), {"type": "websocket"}, "failing at once"),
        (Broken.as_asgi(), {"type": "websocket"}, "cannot make"),
    ],
    ids=["router", "origin", "auth", "as_asgi"],
)
async def test_an_error_comes_out_when_the_application_is_awaited_not_when_it_is_called(application, scope, error):
    """Daphne calls the application and awaits it separately: an error raised from the
    call left the handshake unanswered instead of answering 500."""
    awaitable = application(scope, None, None)  # raising here is the bug
    with pytest.raises(Exception, match=error):
        await awaitable
