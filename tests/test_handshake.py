"""Cheap handshakes: a session login in one database hop, a public allow_read in none,
and what the scope still holds for the resource."""

from __future__ import annotations

import datetime
import functools
import gc
import json
import warnings

import pytest
from asgiref.sync import SyncToAsync
from channels.db import DatabaseSyncToAsync, database_sync_to_async
from channels.testing import WebsocketCommunicator
from django.contrib.auth import SESSION_KEY
from django.contrib.sessions.models import Session
from django.test import override_settings
from django.urls import path
from django.utils import timezone
from django.utils.functional import LazyObject

from harper_resources import Resource, executors, handshake
from harper_resources.auth import ResourceAuthMiddlewareStack
from harper_resources.routing import ResourceRouter
from project.dogs.models import Dog
from tests.conftest import db
from tests.resources import PrivateDogs
from tests.test_auth import basic, make_user, session_cookie
from tests.test_routing_stack import WhoAmIConsumer, opened

pytestmark = pytest.mark.django_db(transaction=True)


class PublicDogs(Resource):
    model = Dog

    def allow_read(self, user):
        return True


class StaffDogs(Resource):
    model = Dog

    def allow_read(self, user):
        return user.is_staff


class WhoAmI(Resource):
    """Reports what the scope holds once the handshake is done."""

    async def allow_read(self, user):
        return True

    async def connect(self, incoming_messages):
        session = self.scope["session"]
        stored = await database_sync_to_async(lambda: session.get(SESSION_KEY))()
        yield {
            "user": self.user.get_username(),
            "same_user": self.scope["user"] is self.user,
            "lazy": isinstance(self.scope["user"], LazyObject),
            "session_key": session.session_key,
            "session_user_id": stored,
            "cookies": sorted(self.scope["cookies"]),
        }


application = ResourceAuthMiddlewareStack(
    ResourceRouter(
        [
            path("public/<str:id>", PublicDogs.as_asgi()),
            path("staff/<str:id>", StaffDogs.as_asgi()),
            path("private/<str:id>", PrivateDogs.as_asgi()),
            path("whoami", WhoAmI.as_asgi()),
        ]
    )
)


@pytest.fixture
def hops(monkeypatch):
    """The functions the server sends to a database thread (``database_sync_to_async``
    or the handshake thread, ``executors.handshake_reads``), by name, in order."""
    sent: list[str] = []
    call = SyncToAsync.__call__
    run = executors.DatabaseThread.run

    async def counting(self, *args, **kwargs):
        if isinstance(self, DatabaseSyncToAsync) and self.func.__module__ != "tests.conftest":
            sent.append(self.func.__name__)
        return await call(self, *args, **kwargs)

    async def counting_run(self, fn, *args):
        sent.append(fn.__name__)
        return await run(self, fn, *args)

    monkeypatch.setattr(SyncToAsync, "__call__", counting)
    monkeypatch.setattr(executors.DatabaseThread, "run", counting_run)
    return sent


async def test_a_public_allow_read_costs_no_thread_hop(ws, hops):
    dog = await db(Dog.objects.create)(name="Rex")
    client = await ws(f"/public/{dog.pk}", application=application)
    assert (await client.receive())["value"]["name"] == "Rex"
    assert hops == ["_first_read"], "no session cookie and return True: the first read is the only hop"


async def test_any_other_sync_allow_read_still_runs_in_a_thread(ws, hops):
    dog = await db(Dog.objects.create)(name="Rex")
    staff = await db(make_user)("staff-member")
    staff.is_staff = True
    await db(staff.save)()
    client = await ws(f"/staff/{dog.pk}", headers=basic("staff-member", "pw-123456"), application=application)
    assert (await client.receive())["value"]["name"] == "Rex"
    assert hops == ["allow_read", "_first_read"]
    await db(make_user)("not-staff")
    refused = await ws(f"/staff/{dog.pk}", headers=basic("not-staff", "pw-123456"), application=application)
    assert await refused.closed_with() == 3003


async def test_a_session_login_reads_session_and_user_in_one_hop(ws, hops):
    user = await db(make_user)("browser-user", perms=["view_dog"])
    cookie = await db(session_cookie)(user)
    dog = await db(Dog.objects.create)(name="Rex")
    client = await ws(f"/private/{dog.pk}", headers=cookie, application=application)
    assert (await client.receive())["value"]["name"] == "Rex"
    assert hops == ["session_user", "allow_read", "_first_read"], "one hop for the login: session and user"


async def test_the_scope_holds_the_user_and_the_session_key_for_the_life_of_the_socket(ws):
    user = await db(make_user)("browser-user")
    cookie = await db(session_cookie)(user)
    key = cookie[0][1].decode().split("=", 1)[1]
    client = await ws("/whoami", headers=[(b"cookie", cookie[0][1] + b"; csrftoken=abc")], application=application)
    assert await client.receive() == {
        "user": "browser-user",
        "same_user": True,
        "lazy": False,
        "session_key": key,
        "session_user_id": str(user.pk),
        "cookies": ["csrftoken", "sessionid"],
    }


async def test_no_cookie_or_an_unknown_session_is_anonymous(ws):
    for headers in ([], [(b"cookie", b"sessionid=not-a-session")]):
        client = await ws("/whoami", headers=headers, application=application)
        seen = await client.receive()
        assert (seen["user"], seen["session_key"], seen["session_user_id"]) == ("", None, None)
        refused = await ws("/private/1", headers=headers, application=application)
        assert await refused.closed_with() == 3000


async def test_a_session_from_before_a_password_change_logs_in_nobody_and_is_not_written(ws):
    user = await db(make_user)("changed-password", perms=["view_dog"])
    cookie = await db(session_cookie)(user)
    user.set_password("another-password")
    await db(user.save)()
    client = await ws("/private/1", headers=cookie, application=application)
    assert await client.closed_with() == 3000
    assert await db(Session.objects.count)() == 1, "the handshake writes nothing, the session row stays"


async def test_basic_credentials_win_over_the_cookie_without_reading_the_session(ws, hops):
    user = await db(make_user)("browser-user")
    cookie = await db(session_cookie)(user)
    await db(make_user)("script-user")
    client = await ws("/whoami", headers=[*cookie, *basic("script-user", "pw-123456")], application=application)
    assert (await client.receive())["user"] == "script-user"
    assert "session_user" not in hops


async def test_an_expired_session_logs_in_nobody(ws):
    user = await db(make_user)("expired", perms=["view_dog"])
    cookie = await db(session_cookie)(user)
    await db(Session.objects.update)(expire_date=timezone.now() - datetime.timedelta(seconds=1))
    client = await ws("/whoami", headers=cookie, application=application)
    assert (await client.receive())["user"] == ""


@pytest.mark.parametrize("engine", ["cached_db", "signed_cookies"])
async def test_other_session_engines_log_in_the_same_way(ws, engine):
    with override_settings(SESSION_ENGINE=f"django.contrib.sessions.backends.{engine}"):
        user = await db(make_user)("browser-user")
        cookie = await db(session_cookie)(user)
        client = await ws("/whoami", headers=cookie, application=application)
        seen = await client.receive()
    assert (seen["user"], seen["session_user_id"]) == ("browser-user", str(user.pk))


@override_settings(HARPER_RESOURCES_REAUTH_INTERVAL=0.2)
async def test_a_session_socket_is_still_revoked_when_its_session_ends(ws):
    user = await db(make_user)("browser-user", perms=["view_dog"])
    cookie = await db(session_cookie)(user)
    dog = await db(Dog.objects.create)(name="Rex")
    client = await ws(f"/private/{dog.pk}", headers=cookie, application=application)
    assert (await client.receive())["value"]["name"] == "Rex"
    await db(Session.objects.all().delete)()
    assert await client.closed_with(timeout=10) == 3000


def returns_true(self, user):
    return True


def documented(self, user):
    """Anyone may read."""
    return True


def reads_the_user(self, user):
    return user.is_authenticated


def generator(self, user):
    yield True
    return True


@pytest.mark.parametrize(
    ("check", "at_once"),
    [
        (returns_true, True),
        (documented, True),
        (PublicDogs().allow_read, True),
        (reads_the_user, False),
        (generator, False),
        (functools.wraps(returns_true)(lambda self, user: returns_true(self, user)), False),
        (StaffDogs().allow_read, False),
        (Resource().allow_read, False),
    ],
)
def test_only_a_def_that_returns_a_constant_is_called_on_the_event_loop(check, at_once):
    assert handshake.answers_at_once(check) is at_once


def awaiting(task):
    """The names of the coroutines a suspended ``task`` is in, outermost first."""
    names, coroutine = [], task.get_coro()
    while coroutine is not None and hasattr(coroutine, "cr_code"):
        names.append(coroutine.cr_code.co_qualname)
        coroutine = coroutine.cr_await
    return names


async def test_an_open_session_socket_keeps_no_frame_of_the_login_or_the_routing(ws):
    """The idle-memory figure: the middleware hands the resource its login to do first,
    so the socket's task is only the resource's own coroutines (reading the client)."""
    user = await db(make_user)("browser-user")
    cookie = await db(session_cookie)(user)
    communicator = WebsocketCommunicator(application, "/whoami", headers=cookie)
    connected, _ = await communicator.connect(timeout=3)
    try:
        assert connected
        assert json.loads(await communicator.receive_from(timeout=3))["user"] == "browser-user"
        assert awaiting(communicator.future)[:2] == ["Resource.__call__", "Resource._read"]
    finally:
        await communicator.disconnect()


async def test_any_other_application_behind_the_middleware_still_gets_the_login_first():
    stack = ResourceAuthMiddlewareStack(
        ResourceRouter([path("consumer", WhoAmIConsumer.as_asgi()), path("resource", WhoAmI.as_asgi())])
    )
    user = await db(make_user)("browser-user")
    cookie = await db(session_cookie)(user)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert await opened(stack, "/consumer", cookie) == repr("browser-user")
        assert json.loads(await opened(stack, "/resource", cookie))["user"] == "browser-user"
        assert await opened(stack, "/nowhere", cookie) == 4404
        gc.collect()
    assert not [str(w.message) for w in caught if "never awaited" in str(w.message)], "no coroutine left unstarted"
