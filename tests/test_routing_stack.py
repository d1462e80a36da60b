"""The routing stack hands over the inner application's coroutine instead of awaiting it
(``harper_resources.handover``), and the auth middleware hands a resource its login to do
first (``handshake.PENDING_LOGIN``): it must still route, log in and fail as Channels'
stack does, whatever the routes."""

from __future__ import annotations

import json

import pytest
from channels.auth import AuthMiddlewareStack
from channels.generic.websocket import AsyncWebsocketConsumer
from channels.routing import URLRouter
from channels.testing import WebsocketCommunicator
from django.urls import path, re_path

from harper_resources import Resource
from harper_resources.auth import OriginValidator, ResourceAuthMiddlewareStack
from harper_resources.routing import ResourceRouter
from tests.conftest import db
from tests.test_auth import make_user, session_cookie

pytestmark = pytest.mark.django_db(transaction=True)


class Echo(AsyncWebsocketConsumer):
    """Accepts and sends the path it was routed to."""

    async def connect(self):
        await self.accept()
        await self.send(text_data=self.scope["path"])


async def opened(application, where, headers=()):
    """What a client of ``where`` (sending ``headers``) gets: the first text frame, or the
    close code."""
    communicator = WebsocketCommunicator(application, where, headers=list(headers))
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


# The login handed over: only to the resource the router really picks.


class WhoAmIConsumer(AsyncWebsocketConsumer):
    async def connect(self):
        await self.accept()
        user = self.scope.get("user")
        await self.send(text_data=repr(user.get_username() if user is not None else None))


class KeyResource(Resource):
    async def allow_read(self, user):
        return True

    async def connect(self, incoming_messages):
        yield {"user": self.user.get_username()}


async def test_under_a_prefix_the_login_reaches_the_application_the_router_really_picks():
    """The stack mounted under ``ws/``: ``/ws/feed`` goes to the plain consumer (routed on
    ``path_remaining``), though the whole path would match the catch-all resource route."""
    inner = ResourceAuthMiddlewareStack(
        ResourceRouter([path("feed", WhoAmIConsumer.as_asgi()), path("<path:key>", KeyResource.as_asgi())])
    )
    app = URLRouter([re_path(r"^ws/", inner)])
    user = await db(make_user)("browser-user")
    cookie = await db(session_cookie)(user)
    assert await opened(app, "/ws/feed", cookie) == repr("browser-user")
    # the resource route still works
    assert json.loads(await opened(app, "/ws/other", cookie))["user"] == "browser-user"


class CallOverride(Resource):
    async def allow_read(self, user):
        return True

    async def __call__(self, scope, receive, send):
        if scope["type"] == "websocket":
            self.seen_user = scope["user"].get_username()  # e.g. for a log line / metrics
        await super().__call__(scope, receive, send)

    async def connect(self, incoming_messages):
        yield {"user": self.user.get_username(), "seen": self.seen_user}


async def test_a_resource_with_a_call_of_its_own_sees_the_user_in_its_scope():
    app = ResourceAuthMiddlewareStack(ResourceRouter([path("me", CallOverride.as_asgi())]))
    user = await db(make_user)("browser-user")
    cookie = await db(session_cookie)(user)
    assert json.loads(await opened(app, "/me", cookie)) == {"user": "browser-user", "seen": "browser-user"}


class StaffOnlyRouter(URLRouter):
    """A URLRouter subclass that checks the user before routing (a common pattern)."""

    async def __call__(self, scope, receive, send):
        if not scope["user"].is_authenticated:
            raise ValueError("anonymous")
        return await super().__call__(scope, receive, send)


async def test_a_router_subclass_with_a_call_of_its_own_sees_the_login():
    app = ResourceAuthMiddlewareStack(
        ResourceRouter([path("api/", StaffOnlyRouter([path("me", KeyResource.as_asgi())]))])
    )
    user = await db(make_user)("browser-user")
    cookie = await db(session_cookie)(user)
    assert json.loads(await opened(app, "/api/me", cookie))["user"] == "browser-user"
