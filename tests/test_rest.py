"""REST on the resource path: the same Resource answers GET/PUT/PATCH/POST/DELETE, with
the same values, permissions and broadcasts as its WebSocket."""

from __future__ import annotations

import asyncio
import base64
import json
import threading
from typing import Any

import pytest
from channels.testing import HttpCommunicator, WebsocketCommunicator
from django.contrib.auth.models import Permission, User
from django.db import OperationalError, connection
from django.test import Client as HttpClient
from django.test import override_settings
from django.urls import path
from django.utils.crypto import get_random_string
from hypothesis import HealthCheck, given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st

from harper_resources import Resource, auth, credentials, rest, tokens
from harper_resources.routing import resource_application
from project.dogs.models import Dog
from tests import resources
from tests.conftest import Client, db
from tests.testapp.models import Cat, Gadget, Stamped
from tests.testapp.resources import AnimalResource, CatResource, GadgetResource, StampedResource, TagResource

pytestmark = pytest.mark.django_db(transaction=True)

PASSWORD = "pw-123456"


class PublicDogs(Resource):
    """Anyone reads; writes need the model's add/change/delete permissions (the defaults)."""

    model = Dog

    def allow_read(self, user):
        return True


class GuardedDogs(PublicDogs):
    """Async hooks: anyone logged in may create; nobody changes or deletes a dog named "Locked"."""

    async def allow_create(self, user):
        return user.is_authenticated

    async def allow_update(self, user, record):
        return user.is_authenticated and record.name != "Locked"

    async def allow_delete(self, user, record):
        return user.is_authenticated and record.name != "Locked"


class HeldDogs(PublicDogs):
    """Writes of a dog named "Held" wait in their permission hook (a def: it runs in the
    write's own thread) until ``released`` is set."""

    released = threading.Event()

    def allow_update(self, user, record):
        if record.name == "Held":
            assert self.released.wait(10)
        return True


routes = [
    path("held-dog/<str:id>", HeldDogs.as_asgi()),
    path("dog/<str:id>", PublicDogs.as_asgi()),
    path("dog/", PublicDogs.as_asgi()),
    path("private-dog/<str:id>", resources.PrivateDogs.as_asgi()),
    path("dog-names/<str:id>", resources.DogNames.as_asgi()),
    path("dog-names/", resources.DogNames.as_asgi()),
    path("labelled-dog/<str:id>", resources.LabelledDogs.as_asgi()),
    path("young-dogs/<str:id>", resources.YoungDogsOnly.as_asgi()),
    path("young-dogs/", resources.YoungDogsOnly.as_asgi()),
    path("user/<str:id>", resources.Users.as_asgi()),
    path("guarded-dog/<str:id>", GuardedDogs.as_asgi()),
    path("guarded-dog/", GuardedDogs.as_asgi()),
    path("members", resources.MembersOnly.as_asgi()),
    path("tag/<path:id>", TagResource.as_asgi()),
    path("tag/", TagResource.as_asgi()),
    path("gadget/<str:id>", GadgetResource.as_asgi()),
    path("gadget/", GadgetResource.as_asgi()),
    path("stamped/<str:id>", StampedResource.as_asgi()),
]
application = resource_application(routes)


class Response:
    def __init__(self, raw: dict[str, Any]) -> None:
        self.status = raw["status"]
        self.headers = {name.decode().lower(): value.decode() for name, value in raw["headers"]}
        self.body = raw["body"]

    def json(self) -> Any:
        assert self.headers["content-type"] == "application/json"
        return json.loads(self.body)


async def call(method: str, url: str, body: Any = None, headers=(), raw: bytes | None = None, app=application):
    """One request to ``app``; ``body`` is sent as JSON, ``raw`` as it is."""
    data = raw if raw is not None else b"" if body is None else json.dumps(body).encode()
    sent = [(b"host", b"testserver"), *headers]
    if data and not any(name == b"content-type" for name, _ in sent):
        sent.append((b"content-type", b"application/json"))
    communicator = HttpCommunicator(app, method, url, data, sent)
    try:
        return Response(await communicator.get_response(timeout=10))
    finally:
        await communicator.wait(timeout=5)


def basic(username, password=PASSWORD):
    token = base64.b64encode(f"{username}:{password}".encode()).decode()
    return [(b"authorization", f"Basic {token}".encode())]


def make_user(username, perms=(), **extra):
    user = User.objects.create_user(username, password=PASSWORD, **extra)
    for codename in perms:
        user.user_permissions.add(Permission.objects.get(codename=codename))
    return user


def session_headers(user, csrf: str | None = None):
    """The session cookie of ``user`` (and a csrftoken cookie plus the matching
    X-CSRFToken header when ``csrf`` is "valid", only the cookie when "cookie-only")."""
    client = HttpClient()
    client.force_login(user)
    cookie = f"sessionid={client.cookies['sessionid'].value}"
    headers = []
    if csrf is not None:
        secret = get_random_string(32)
        cookie += f"; csrftoken={secret}"
        if csrf == "valid":
            headers.append((b"x-csrftoken", secret.encode()))
    return [(b"cookie", cookie.encode()), *headers]


@pytest.fixture
async def editor():
    """Basic credentials of a user with every permission on Dog."""
    await db(make_user)("editor", perms=("add_dog", "change_dog", "delete_dog", "view_dog"))
    return basic("editor")


@pytest.fixture
async def superuser():
    """Basic credentials of a superuser (every permission of every model)."""
    await db(User.objects.create_superuser)("root", password=PASSWORD)
    return basic("root")


@pytest.fixture
async def reader():
    """Basic credentials of a logged-in user with no permission at all."""
    await db(make_user)("reader")
    return basic("reader")


def row(pk):
    return Dog.objects.values("id", "name", "breed", "age").get(pk=pk)


# GET ------------------------------------------------------------------------------------


async def test_get_of_a_record_is_200_json_of_the_value_its_websocket_put_carries(ws):
    dog = await db(Dog.objects.create)(name="Rex", breed="Collie", age=3)
    response = await call("GET", f"/dog/{dog.pk}")
    assert response.status == 200
    assert response.json() == {"id": dog.pk, "name": "Rex", "breed": "Collie", "age": 3}
    client = await ws(f"/dog/{dog.pk}", application=application)
    assert (await client.receive())["value"] == response.json()


@pytest.mark.parametrize("prefix", ["dog-names", "labelled-dog", "user"])
async def test_fields_exclude_and_serialize_shape_rest_bodies_exactly_as_websocket_values(ws, prefix):
    if prefix == "user":
        record = await db(User.objects.create_user)("someone", password="secret-pw")
    else:
        record = await db(Dog.objects.create)(name="Rex", breed="Collie", age=3)
    response = await call("GET", f"/{prefix}/{record.pk}")
    client = await ws(f"/{prefix}/{record.pk}", application=application)
    put = await client.receive()
    assert response.status == 200
    assert response.json() == put["value"]
    assert "age" not in response.json() and "password" not in response.json()


async def test_get_of_a_missing_record_or_an_impossible_id_is_404_json():
    for url in ("/dog/999999", "/dog/abc"):
        response = await call("GET", url)
        assert response.status == 404
        assert "error" in response.json()


async def test_get_of_a_record_the_resource_hides_is_404():
    old = await db(Dog.objects.create)(name="Old", age=12)
    young = await db(Dog.objects.create)(name="Pup", age=1)
    assert (await call("GET", f"/young-dogs/{old.pk}")).status == 404
    assert (await call("GET", f"/young-dogs/{young.pk}")).status == 200
    assert [dog["name"] for dog in (await call("GET", "/young-dogs/")).json()] == ["Pup"]


async def test_head_answers_the_headers_of_get_without_a_body():
    dog = await db(Dog.objects.create)(name="Rex")
    response = await call("HEAD", f"/dog/{dog.pk}")
    full = await call("GET", f"/dog/{dog.pk}")
    assert (response.status, response.body) == (200, b"")
    assert response.headers["content-length"] == str(len(full.body))


async def test_the_collection_is_a_json_array_in_key_order_paged_with_limit_and_offset():
    dogs = [await db(Dog.objects.create)(name=f"Dog {n}", age=n) for n in range(5)]
    everything = (await call("GET", "/dog/")).json()
    assert [dog["id"] for dog in everything] == [dog.pk for dog in dogs]
    page = (await call("GET", "/dog/?limit=2&offset=1")).json()
    assert [dog["name"] for dog in page] == ["Dog 1", "Dog 2"]
    assert (await call("GET", "/dog/?limit=0")).json() == []


async def test_the_collection_default_page_is_the_collection_limit():
    for n in range(4):
        await db(Dog.objects.create)(name=f"Dog {n}")
    with override_settings(HARPER_RESOURCES_COLLECTION_LIMIT=3):
        assert len((await call("GET", "/dog/")).json()) == 3
        response = await call("GET", "/dog/?limit=4")
    assert response.status == 400
    assert "limit" in response.json()["errors"]


async def test_the_collection_filters_on_the_fields_the_resource_shows():
    await db(Dog.objects.create)(name="Rex", breed="Collie", age=3)
    await db(Dog.objects.create)(name="Luna", breed="Husky", age=3)
    await db(Dog.objects.create)(name="Biscuit", breed="Collie", age=5)
    collies = (await call("GET", "/dog/?breed=Collie")).json()
    assert [dog["name"] for dog in collies] == ["Rex", "Biscuit"]
    assert [dog["name"] for dog in (await call("GET", "/dog/?breed=Collie&age=5")).json()] == ["Biscuit"]
    assert [dog["name"] for dog in (await call("GET", "/dog/?age=3&age=5&limit=2")).json()] == ["Rex", "Luna"]


@pytest.mark.parametrize(
    ("url", "field"),
    [
        ("/dog/?colour=brown", "colour"),  # not a field at all
        ("/dog-names/?age=3", "age"),  # a field this resource does not show
        ("/dog/?age=old", "age"),  # not a value of the field
        ("/dog/?limit=-1", "limit"),
        ("/dog/?offset=x", "offset"),
    ],
)
async def test_a_bad_query_is_400_naming_the_parameter(url, field):
    response = await call("GET", url)
    assert response.status == 400
    assert list(response.json()["errors"]) == [field]


# Permissions ------------------------------------------------------------------------------


async def test_reading_a_private_resource_needs_a_login_then_the_view_permission(reader):
    dog = await db(Dog.objects.create)(name="Rex")
    anonymous = await call("GET", f"/private-dog/{dog.pk}")
    assert anonymous.status == 401
    assert anonymous.headers["www-authenticate"].startswith("Basic realm=")
    assert (await call("GET", f"/private-dog/{dog.pk}", headers=reader)).status == 403
    await db(make_user)("viewer", perms=("view_dog",))
    assert (await call("GET", f"/private-dog/{dog.pk}", headers=basic("viewer"))).status == 200


async def test_wrong_credentials_are_401_even_on_a_public_resource(reader):
    dog = await db(Dog.objects.create)(name="Rex")
    response = await call("GET", f"/dog/{dog.pk}", headers=basic("reader", "wrong password"))
    assert response.status == 401
    assert "www-authenticate" in response.headers
    bearer = [(b"authorization", b"Bearer not-a-token")]
    assert (await call("GET", f"/dog/{dog.pk}", headers=bearer)).status == 401


@pytest.mark.parametrize(
    ("method", "url", "body"),
    [
        ("PUT", "/dog/{pk}", {"name": "X"}),
        ("PATCH", "/dog/{pk}", {"name": "X"}),
        ("DELETE", "/dog/{pk}", None),
        ("POST", "/dog/", {"name": "X"}),
    ],
)
async def test_writes_refuse_anonymous_clients_401_and_users_without_the_permission_403(method, url, body, reader):
    dog = await db(Dog.objects.create)(name="Rex")
    anonymous = await call(method, url.format(pk=dog.pk), body)
    assert anonymous.status == 401
    assert anonymous.headers["www-authenticate"].startswith("Basic")
    assert (await call(method, url.format(pk=dog.pk), body, headers=reader)).status == 403
    assert await db(row)(dog.pk) == {"id": dog.pk, "name": "Rex", "breed": "", "age": 0}
    assert await db(Dog.objects.count)() == 1


async def test_async_hooks_decide_per_record(reader):
    dog = await db(Dog.objects.create)(name="Rex")
    locked = await db(Dog.objects.create)(name="Locked")
    assert (await call("PATCH", f"/guarded-dog/{dog.pk}", {"age": 4}, headers=reader)).status == 200
    assert (await call("PATCH", f"/guarded-dog/{locked.pk}", {"age": 4}, headers=reader)).status == 403
    assert (await call("DELETE", f"/guarded-dog/{locked.pk}", headers=reader)).status == 403
    assert (await call("POST", "/guarded-dog/", {"name": "New"}, headers=reader)).status == 201
    assert (await call("POST", "/guarded-dog/", {"name": "New"})).status == 401


# Writes -----------------------------------------------------------------------------------


async def test_put_replaces_the_record_and_answers_the_stored_value(editor):
    dog = await db(Dog.objects.create)(name="Rex", breed="Collie", age=3)
    response = await call("PUT", f"/dog/{dog.pk}", {"id": dog.pk, "name": "Rex II"}, headers=editor)
    assert response.status == 200
    # A full replace: the omitted fields take their defaults.
    assert response.json() == {"id": dog.pk, "name": "Rex II", "breed": "", "age": 0}
    assert await db(row)(dog.pk) == response.json()


async def test_patch_changes_only_the_fields_it_sends(editor):
    dog = await db(Dog.objects.create)(name="Rex", breed="Collie", age=3)
    response = await call("PATCH", f"/dog/{dog.pk}", {"age": 4}, headers=editor)
    assert response.status == 200
    assert response.json() == {"id": dog.pk, "name": "Rex", "breed": "Collie", "age": 4}
    assert await db(row)(dog.pk) == response.json()
    unchanged = await call("PATCH", f"/dog/{dog.pk}", {"id": dog.pk}, headers=editor)
    assert (unchanged.status, unchanged.json()) == (200, response.json())


async def test_post_creates_a_record_201_with_its_location_and_value(editor):
    response = await call("POST", "/dog/", {"name": "Fido", "breed": "Beagle"}, headers=editor)
    assert response.status == 201
    created = await db(Dog.objects.get)(name="Fido")
    assert response.headers["location"] == f"/dog/{created.pk}"
    assert response.json() == {"id": created.pk, "name": "Fido", "breed": "Beagle", "age": 0}
    assert (await call("GET", response.headers["location"])).json() == response.json()


async def test_delete_removes_the_record_with_204(editor):
    dog = await db(Dog.objects.create)(name="Rex")
    response = await call("DELETE", f"/dog/{dog.pk}", headers=editor)
    assert (response.status, response.body) == (204, b"")
    assert not await db(Dog.objects.filter(pk=dog.pk).exists)()
    assert (await call("DELETE", f"/dog/{dog.pk}", headers=editor)).status == 404


async def test_writes_to_a_missing_record_are_404(editor):
    for method in ("PUT", "PATCH"):
        assert (await call(method, "/dog/999999", {"name": "X"}, headers=editor)).status == 404
    assert await db(Dog.objects.count)() == 0


@pytest.mark.parametrize(
    ("method", "body", "fields"),
    [
        ("PUT", {"breed": "Collie"}, ["name"]),  # required
        ("PATCH", {"name": ""}, ["name"]),  # required, sent empty
        ("PATCH", {"age": "old"}, ["age"]),  # not a number
        ("PATCH", {"age": -1}, ["age"]),  # a validator of the model field
        ("PATCH", {"name": "x" * 101}, ["name"]),  # max_length
        ("PATCH", {"colour": "brown"}, ["colour"]),  # not a field of the resource
        ("PATCH", {"id": 1_000_000}, ["id"]),  # another record's key
        ("PATCH", {"name": None, "age": "x"}, ["name", "age"]),
    ],
)
async def test_invalid_values_are_400_json_naming_each_field(editor, method, body, fields):
    dog = await db(Dog.objects.create)(name="Rex", breed="Collie", age=3)
    response = await call(method, f"/dog/{dog.pk}", body, headers=editor)
    assert response.status == 400
    assert sorted(response.json()["errors"]) == sorted(fields)
    assert await db(row)(dog.pk) == {"id": dog.pk, "name": "Rex", "breed": "Collie", "age": 3}


async def test_a_field_the_resource_does_not_show_cannot_be_written(editor):
    dog = await db(Dog.objects.create)(name="Rex", age=3)
    response = await call("PATCH", f"/dog-names/{dog.pk}", {"age": 9}, headers=editor)
    assert (response.status, list(response.json()["errors"])) == (400, ["age"])
    # PUT replaces what the resource shows, and leaves the rest as stored.
    response = await call("PUT", f"/dog-names/{dog.pk}", {"name": "Rex II"}, headers=editor)
    assert response.json() == {"id": dog.pk, "name": "Rex II"}
    assert await db(row)(dog.pk) == {"id": dog.pk, "name": "Rex II", "breed": "", "age": 3}


async def test_a_body_read_with_get_can_be_sent_back_with_put(editor):
    dog = await db(Dog.objects.create)(name="Rex", age=3)
    value = (await call("GET", f"/dog/{dog.pk}")).json()
    response = await call("PUT", f"/dog/{dog.pk}", {**value, "age": 5}, headers=editor)
    assert (response.status, response.json()["age"]) == (200, 5)


@pytest.mark.parametrize("raw", [b"{not json", b'["a", "list"]', b"\xff\xfe", b""])
async def test_a_body_that_is_not_a_json_object_is_400(editor, raw):
    dog = await db(Dog.objects.create)(name="Rex")
    response = await call("PATCH", f"/dog/{dog.pk}", raw=raw, headers=editor)
    assert response.status == 400
    assert response.json()["error"]


async def test_a_body_over_the_size_limit_is_413(editor):
    dog = await db(Dog.objects.create)(name="Rex")
    with override_settings(HARPER_RESOURCES_MAX_MESSAGE_BYTES=100):
        response = await call("PATCH", f"/dog/{dog.pk}", {"name": "x" * 200}, headers=editor)
        declared = await call("POST", "/dog/", raw=b"{}", headers=[*editor, (b"content-length", b"5000000")])
    assert response.status == 413
    assert declared.status == 413
    assert (await db(row)(dog.pk))["name"] == "Rex"


@pytest.mark.parametrize(
    ("method", "url", "allow"),
    [
        ("POST", "/dog/{pk}", "GET, HEAD, PUT, PATCH, DELETE, OPTIONS"),
        ("DELETE", "/dog/", "GET, HEAD, POST, OPTIONS"),
        ("PUT", "/dog/", "GET, HEAD, POST, OPTIONS"),
        ("POST", "/members", "GET, HEAD, OPTIONS"),
    ],
)
async def test_a_method_the_path_does_not_support_is_405_with_allow(editor, method, url, allow):
    dog = await db(Dog.objects.create)(name="Rex")
    response = await call(method, url.format(pk=dog.pk), {"name": "X"}, headers=editor)
    assert response.status == 405
    assert response.headers["allow"] == allow
    options = await call("OPTIONS", url.format(pk=dog.pk))
    assert (options.status, options.headers["allow"]) == (204, allow)


async def test_a_plain_resource_needs_its_login_and_has_no_records(reader):
    assert (await call("GET", "/members")).status == 401
    response = await call("GET", "/members", headers=reader)
    assert response.status == 404
    assert "WebSocket" in response.json()["error"]


async def test_paths_no_resource_answers_are_404_json_without_an_http_application():
    response = await call("GET", "/nowhere/1")
    assert response.status == 404
    assert response.json() == {"error": "No resource at this path"}


async def test_other_paths_go_to_the_http_application_untouched():
    seen = []

    async def django_like(scope, receive, send):
        seen.append(scope)
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"page"})

    app = resource_application(routes, http=django_like)
    page = await call("GET", "/dogs/341/", app=app)
    assert (page.status, page.body) == (200, b"page")
    # Not through the resources' session and auth middleware: Django loads its session itself.
    assert "session" not in seen[0] and "user" not in seen[0]
    dog = await db(Dog.objects.create)(name="Rex")
    assert (await call("GET", f"/dog/{dog.pk}", app=app)).json()["name"] == "Rex"
    assert len(seen) == 1


async def test_an_event_stream_request_is_not_answered_as_rest():
    dog = await db(Dog.objects.create)(name="Rex")
    communicator = HttpCommunicator(
        application, "GET", f"/dog/{dog.pk}", headers=[(b"host", b"testserver"), (b"accept", b"text/event-stream")]
    )
    await communicator.send_input({"type": "http.request", "body": b""})
    start = await communicator.receive_output(timeout=10)
    headers = dict(start["headers"])
    assert (start["status"], headers[b"content-type"].split(b";")[0]) == (200, b"text/event-stream")
    await communicator.send_input({"type": "http.disconnect"})
    await communicator.wait(timeout=5)


# Auth and CSRF ------------------------------------------------------------------------------


async def test_a_session_needs_the_csrf_token_for_writes():
    staff = await db(make_user)("staff", perms=("change_dog",), is_staff=True)
    dog = await db(Dog.objects.create)(name="Rex")
    no_cookie = await call("PATCH", f"/dog/{dog.pk}", {"name": "A"}, headers=await db(session_headers)(staff))
    no_header = await call(
        "PATCH", f"/dog/{dog.pk}", {"name": "B"}, headers=await db(session_headers)(staff, "cookie-only")
    )
    for refused in (no_cookie, no_header):
        assert refused.status == 403
        assert "CSRF" in refused.json()["error"]
    assert (await db(row)(dog.pk))["name"] == "Rex"
    accepted = await call("PATCH", f"/dog/{dog.pk}", {"name": "C"}, headers=await db(session_headers)(staff, "valid"))
    assert (accepted.status, accepted.json()["name"]) == (200, "C")


async def test_a_session_csrf_token_from_another_origin_is_refused():
    staff = await db(make_user)("staff", perms=("change_dog",), is_staff=True)
    dog = await db(Dog.objects.create)(name="Rex")
    headers = [*await db(session_headers)(staff, "valid"), (b"origin", b"https://evil.example")]
    response = await call("PATCH", f"/dog/{dog.pk}", {"name": "Evil"}, headers=headers)
    assert response.status == 403
    assert (await db(row)(dog.pk))["name"] == "Rex"


async def test_a_session_reads_without_a_csrf_token():
    viewer = await db(make_user)("viewer", perms=("view_dog",))
    dog = await db(Dog.objects.create)(name="Rex")
    response = await call("GET", f"/private-dog/{dog.pk}", headers=await db(session_headers)(viewer))
    assert response.status == 200


async def test_basic_and_bearer_write_without_a_csrf_token(editor):
    dog = await db(Dog.objects.create)(name="Rex")
    assert (await call("PATCH", f"/dog/{dog.pk}", {"name": "Basic"}, headers=editor)).status == 200
    user = await db(User.objects.get)(username="editor")
    bearer = [(b"authorization", f"Bearer {tokens.make_token(user)}".encode())]
    response = await call("PATCH", f"/dog/{dog.pk}", {"name": "Bearer"}, headers=bearer)
    assert (response.status, response.json()["name"]) == (200, "Bearer")


# A remembered login is re-checked in the write's own thread hop ------------------------


@pytest.mark.parametrize("method", ["PUT", "PATCH", "DELETE"])
async def test_a_write_with_a_remembered_basic_login_rechecks_the_user_row_in_the_writes_own_hop(
    editor, method, monkeypatch
):
    dog = await db(Dog.objects.create)(name="Rex")
    assert (await call("PATCH", f"/dog/{dog.pk}", {"name": "First"}, headers=editor)).status == 200  # remembered
    rechecked = []
    active_user = credentials.active_user

    def counting(pk, fingerprint):
        rechecked.append(pk)
        return active_user(pk, fingerprint)

    async def separate_hop(pk, fingerprint):
        raise AssertionError("the write re-checked the login in a thread hop of its own")

    monkeypatch.setattr(credentials, "active_user", counting)
    monkeypatch.setattr(credentials, "active_user_checked", separate_hop)
    body = {"name": "Second", "breed": "Beagle", "age": 3} if method == "PUT" else {"name": "Second"}
    response = await call(method, f"/dog/{dog.pk}", None if method == "DELETE" else body, headers=editor)
    assert response.status == (204 if method == "DELETE" else 200)
    editor_pk = (await db(User.objects.get)(username="editor")).pk
    assert rechecked == [editor_pk]
    remaining = await db(lambda: list(Dog.objects.filter(pk=dog.pk).values_list("name", flat=True)))()
    assert remaining == ([] if method == "DELETE" else ["Second"])


def _change_password(user):
    user.set_password("a-new-password")
    user.save()


def _deactivate(user):
    user.is_active = False
    user.save()


@pytest.mark.parametrize("change", [_change_password, _deactivate])
@pytest.mark.parametrize("method", ["PATCH", "DELETE"])
async def test_a_write_with_a_remembered_login_that_no_longer_holds_is_refused_401_and_writes_nothing(
    editor, change, method
):
    dog = await db(Dog.objects.create)(name="Rex")
    user = await db(User.objects.get)(username="editor")
    bearer = [(b"authorization", f"Bearer {tokens.make_token(user)}".encode())]
    assert (await call("PATCH", f"/dog/{dog.pk}", {"name": "Before"}, headers=editor)).status == 200
    await db(change)(user)
    for headers in (editor, bearer):
        response = await call(
            method, f"/dog/{dog.pk}", None if method == "DELETE" else {"name": "After"}, headers=headers
        )
        assert response.status == 401
        assert response.headers["www-authenticate"].startswith("Basic")
    assert await db(lambda: Dog.objects.get(pk=dog.pk).name)() == "Before"


@pytest.mark.parametrize("bearer", [False, True])
@pytest.mark.parametrize("refused", ["too large", "bad length"])
async def test_a_remembered_login_that_no_longer_holds_is_401_before_its_body_is_refused(editor, bearer, refused):
    # The user row is re-read in the write's own hop, after the body is read: a body
    # refused on the way (413, 400) must not answer before the credentials do.
    dog = await db(Dog.objects.create)(name="Rex")
    user = await db(User.objects.get)(username="editor")
    headers = [(b"authorization", f"Bearer {tokens.make_token(user)}".encode())] if bearer else editor
    assert (await call("PATCH", f"/dog/{dog.pk}", {"name": "Before"}, headers=headers)).status == 200

    async def send():
        if refused == "too large":
            with override_settings(HARPER_RESOURCES_MAX_MESSAGE_BYTES=100):
                return await call("PATCH", f"/dog/{dog.pk}", {"name": "x" * 200}, headers=headers)
        return await call("PATCH", f"/dog/{dog.pk}", raw=b"{}", headers=[*headers, (b"content-length", b"abc")])

    assert (await send()).status == (413 if refused == "too large" else 400)  # the login still holds
    await db(_change_password)(user)
    response = await send()
    assert response.status == 401
    assert response.headers["www-authenticate"].startswith("Basic")
    assert await db(lambda: Dog.objects.get(pk=dog.pk).name)() == "Before"


def test_a_remembered_logins_check_keeps_its_password_out_of_reprs():
    # It sits in the scope (harper_resources.user_check) until the write's hop.
    check = auth.UserCheck("basic", 1, "f" * 32, basic=("editor", PASSWORD))
    assert PASSWORD not in repr(check)


async def test_a_write_with_a_remembered_login_whose_hash_was_renewed_checks_the_password_in_full(editor):
    # The same password hashed again (a new salt, as a hasher upgrade does): the
    # remembered fingerprint no longer matches, but the password is still right.
    dog = await db(Dog.objects.create)(name="Rex")
    assert (await call("PATCH", f"/dog/{dog.pk}", {"name": "Before"}, headers=editor)).status == 200

    def rehash():
        user = User.objects.get(username="editor")
        user.set_password(PASSWORD)
        user.save()

    await db(rehash)()
    response = await call("PATCH", f"/dog/{dog.pk}", {"name": "After"}, headers=editor)
    assert (response.status, response.json()["name"]) == (200, "After")
    assert await db(lambda: Dog.objects.get(pk=dog.pk).name)() == "After"


async def test_a_write_waiting_in_its_hook_holds_up_writes_of_other_records_only_on_sqlite(editor):
    # On a database that locks rows (PostgreSQL) REST writes run in a pool of threads
    # (WRITE_THREADS); on SQLite they share one thread, as its writers wait for each other.
    held = await db(Dog.objects.create)(name="Held")
    other = await db(Dog.objects.create)(name="Other")
    assert (await call("PATCH", f"/dog/{other.pk}", {"age": 1}, headers=editor)).status == 200  # login remembered
    HeldDogs.released.clear()
    try:
        waiting = asyncio.ensure_future(call("PATCH", f"/held-dog/{held.pk}", {"age": 2}, headers=editor))
        await asyncio.sleep(0.2)  # the held write is in its hook
        other_write = asyncio.ensure_future(call("PATCH", f"/held-dog/{other.pk}", {"age": 3}, headers=editor))
        done, _ = await asyncio.wait([other_write], timeout=1.0)
        assert not waiting.done()
        assert bool(done) == connection.features.has_select_for_update
    finally:
        HeldDogs.released.set()
    assert ((await waiting).status, (await other_write).status) == (200, 200)
    assert await db(lambda: sorted(Dog.objects.values_list("name", "age")))() == [("Held", 2), ("Other", 3)]


# Subscribers see REST writes --------------------------------------------------------------


async def test_websocket_subscribers_see_rest_writes(ws, editor):
    dog = await db(Dog.objects.create)(name="Rex")
    record = await ws(f"/dog/{dog.pk}", application=application)
    collection = await ws("/dog/", application=application)
    assert (await record.receive())["value"]["name"] == "Rex"
    assert (await collection.receive())["id"] == dog.pk
    await call("PATCH", f"/dog/{dog.pk}", {"name": "Rex II"}, headers=editor)
    assert (await record.receive(timeout=5))["value"]["name"] == "Rex II"
    created = (await call("POST", "/dog/", {"name": "Fido"}, headers=editor)).json()
    updates = [await collection.receive(timeout=5) for _ in range(2)]
    assert [(frame["id"], frame["value"]["name"]) for frame in updates] == [(dog.pk, "Rex II"), (created["id"], "Fido")]
    await call("DELETE", f"/dog/{dog.pk}", headers=editor)
    assert (await record.receive(timeout=5))["type"] == "delete"


async def test_concurrent_patches_leave_every_watcher_on_the_stored_row(ws, editor):
    dog = await db(Dog.objects.create)(name="Rex", breed="Collie", age=0)
    watcher = await ws(f"/dog/{dog.pk}", application=application)
    assert (await watcher.receive())["value"]["name"] == "Rex"
    bodies = [{"age": n} if n % 2 else {"name": f"Rex {n}"} for n in range(1, 13)]
    responses = await asyncio.gather(*(call("PATCH", f"/dog/{dog.pk}", body, headers=editor) for body in bodies))
    assert [response.status for response in responses] == [200] * len(bodies)
    stored = await db(row)(dog.pk)
    # PATCH writes only its own fields: the last name and the last age both stay.
    assert stored["name"].startswith("Rex ") and stored["age"] in range(1, 13, 2)
    frames = await watcher.until_quiet(quiet=1.0)
    assert frames, "the watcher saw the changes"
    assert frames[-1]["value"] == stored
    assert [frame["version"] for frame in frames] == sorted(frame["version"] for frame in frames)
    assert (await call("GET", f"/dog/{dog.pk}")).json() == stored


#: A REST write: method, which of two records, a value.
rest_writes = st.tuples(st.sampled_from(["PUT", "PATCH", "PATCH", "DELETE"]), st.integers(0, 1), st.integers(0, 30))


@hypothesis_settings(max_examples=6, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(writes=st.lists(rest_writes, min_size=2, max_size=10))
def test_concurrent_rest_writes_in_any_mix_leave_every_watcher_on_the_stored_rows(writes):
    # All at once: on PostgreSQL through the write pool (row locks order them), on SQLite
    # one after another on the shared thread. Each watcher ends on its row as stored (a
    # delete if it is gone), with versions that never go back.
    make_user("mixer", perms=("change_dog", "delete_dog"))
    mixer = basic("mixer")
    pks = [Dog.objects.create(name=f"Dog {n}", breed="Collie", age=0).pk for n in range(2)]

    def body(method, value):
        if method == "PUT":
            return {"name": f"Put {value}", "breed": "Beagle", "age": value}
        return None if method == "DELETE" else {"age": value}

    async def scenario():
        watchers = []
        for pk in pks:
            communicator = WebsocketCommunicator(application, f"/dog/{pk}")
            assert (await communicator.connect(timeout=3))[0]
            watchers.append(Client(communicator))
        try:
            for watcher in watchers:
                await watcher.receive()  # the first frame
            responses = await asyncio.gather(
                *(call(method, f"/dog/{pks[n]}", body(method, value), headers=mixer) for method, n, value in writes)
            )
            assert {response.status for response in responses} <= {200, 204, 404}
            return [await watcher.until_quiet(quiet=0.7) for watcher in watchers]
        finally:
            for watcher in watchers:
                await watcher.leave()

    try:
        seen = asyncio.run(scenario())
        for n, (pk, frames) in enumerate(zip(pks, seen, strict=True)):
            stored = Dog.objects.filter(pk=pk).values("id", "name", "breed", "age").first()
            if not frames:  # no write reached this record: it is as created
                assert stored == {"id": pk, "name": f"Dog {n}", "breed": "Collie", "age": 0}
                continue
            assert [frame["version"] for frame in frames] == sorted(frame["version"] for frame in frames)
            if stored is None:
                assert frames[-1]["type"] == "delete"
            else:
                assert (frames[-1]["type"], frames[-1]["value"]) == ("put", stored)
    finally:
        User.objects.filter(username="mixer").delete()
        Dog.objects.filter(pk__in=pks).delete()


inheritance_application = resource_application(
    [path("animal/<str:id>", AnimalResource.as_asgi()), path("cat/<str:id>", CatResource.as_asgi())]
)


async def test_concurrent_writes_through_a_parent_and_its_child_table_never_answer_500(superuser):
    # Multi-table inheritance: the child's locked read and the parent's delete take their
    # row locks in opposite orders, and PostgreSQL aborts one as a deadlock (found by a
    # review: 22 of 29 rounds answered 500 with the write pool). That write is tried again.
    cats = [await db(Cat.objects.create)(name=f"C{n}") for n in range(7)]
    app = inheritance_application
    assert (await call("PATCH", f"/cat/{cats[0].pk}", {"name": "warm"}, headers=superuser, app=app)).status == 200
    for cat in cats[1:]:
        responses = await asyncio.gather(
            call("PATCH", f"/cat/{cat.pk}", {"name": "x", "indoor": False}, headers=superuser, app=app),
            call("PATCH", f"/animal/{cat.pk}", {"name": "y"}, headers=superuser, app=app),
            call("DELETE", f"/animal/{cat.pk}", headers=superuser, app=app),
            call("PATCH", f"/cat/{cat.pk}", {"name": "z"}, headers=superuser, app=app),
        )
        assert {response.status for response in responses} <= {200, 204, 404, 409}
        assert not await db(Cat.objects.filter(pk=cat.pk).exists)()  # the delete went through


@pytest.mark.parametrize(("deadlocks", "status"), [(2, 200), (3, 409)])
async def test_a_write_aborted_as_a_deadlock_is_tried_again_up_to_three_times(monkeypatch, deadlocks, status):
    calls = []

    async def write(*args):
        calls.append(args)
        if len(calls) <= deadlocks:
            error = OperationalError("deadlock detected")
            error.__cause__ = type("DeadlockDetected", (Exception,), {"sqlstate": "40P01"})()
            raise error
        return 200, {"written": True}, []

    monkeypatch.setattr(rest, "_write_record_on_shared_thread", write)
    monkeypatch.setattr(rest, "_locks_rows", lambda alias: False)
    resource = PublicDogs()
    resource.model = Dog
    try:
        answer = await rest._write_record_in_thread(resource, {}, "PATCH", b"{}", resource.allow_update)
    except rest.Answer as refused:
        answer = refused.status, refused.value, refused.headers
    assert (answer[0], len(calls)) == (status, min(deadlocks + 1, rest.DEADLOCK_ATTEMPTS))


@pytest.mark.parametrize(
    ("cause", "deadlock"),
    [
        (("sqlstate", "40P01"), True),
        (("sqlstate", "40001"), True),
        (("pgcode", "40P01"), True),
        (("sqlstate", "23505"), False),
        (None, False),
    ],
)
def test_only_a_transaction_aborted_as_a_deadlock_is_tried_again(cause, deadlock):
    error = OperationalError("database is locked")
    if cause is not None:
        driver_error = Exception("aborted")
        setattr(driver_error, *cause)
        error.__cause__ = driver_error
    assert rest._deadlocked(error) is deadlock


# Other keys and field types --------------------------------------------------------------


async def test_text_keys_with_spaces_and_slashes_round_trip_through_location(superuser):
    created = await call("POST", "/tag/", {"name": "good dogs/über", "color": "red"}, headers=superuser)
    assert created.status == 201
    assert created.headers["location"] == "/tag/good%20dogs%2F%C3%BCber"
    assert (await call("GET", created.headers["location"])).json() == {"name": "good dogs/über", "color": "red"}
    patched = await call("PATCH", created.headers["location"], {"color": "blue"}, headers=superuser)
    assert patched.json() == {"name": "good dogs/über", "color": "blue"}
    # A key is set when the record is created, never changed by a write to its path.
    moved = await call("PATCH", created.headers["location"], {"name": "other"}, headers=superuser)
    assert (moved.status, list(moved.json()["errors"])) == (400, ["name"])
    again = await call("POST", "/tag/", {"name": "good dogs/über"}, headers=superuser)
    assert (again.status, list(again.json()["errors"])) == (400, ["name"])  # unique, as a ModelForm checks
    plain = await call("POST", "/tag/", {"name": "plain"}, headers=superuser)
    assert (plain.status, plain.json()) == (201, {"name": "plain", "color": ""})  # an omitted field: its default


async def test_uuid_keys_decimals_datetimes_and_json_are_written_and_read_as_the_websocket_shows_them(ws, superuser):
    serial = "12345678-1234-5678-1234-567812345678"
    body = {"name": "Ball", "price": "3.50", "made": "2026-01-02T03:04:05Z", "serial": serial, "specs": {"n": [1, 2]}}
    created = await call("POST", "/gadget/", body, headers=superuser)
    assert created.status == 201, created.body
    value = created.json()
    assert (value["price"], value["serial"], value["specs"]) == ("3.50", serial, {"n": [1, 2]})
    assert value["made"].startswith("2026-01-02T03:04:05")
    gadget = await db(Gadget.objects.get)(name="Ball")
    assert created.headers["location"] == f"/gadget/{gadget.pk}"
    client = await ws(created.headers["location"], application=application)
    assert (await client.receive())["value"] == (await call("GET", created.headers["location"])).json() == value
    bad = await call("PATCH", created.headers["location"], {"price": "cheap", "made": "soon"}, headers=superuser)
    assert sorted(bad.json()["errors"]) == ["made", "price"]


async def test_fields_the_model_keeps_itself_are_shown_but_not_written(superuser):
    stamped = await db(Stamped.objects.create)(title="First")
    value = (await call("GET", f"/stamped/{stamped.pk}")).json()
    response = await call(
        "PUT",
        f"/stamped/{stamped.pk}",
        {**value, "title": "Second", "updated": "2000-01-01T00:00:00Z"},
        headers=superuser,
    )
    assert response.status == 200
    assert response.json()["title"] == "Second"
    assert response.json()["updated"] >= value["updated"]  # auto_now, not the body's value


async def test_nested_routers_and_other_consumers_in_the_route_list_route_as_expected():
    from channels.generic.websocket import AsyncWebsocketConsumer
    from channels.routing import URLRouter

    seen = []

    async def django_like(scope, receive, send):
        seen.append(scope["path"])
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"page"})

    nested = [
        path("api/", URLRouter([path("dog/<str:id>", PublicDogs.as_asgi())])),
        path("chat/<str:room>", AsyncWebsocketConsumer.as_asgi()),  # a WebSocket-only consumer
    ]
    app = resource_application(nested, http=django_like)
    dog = await db(Dog.objects.create)(name="Rex")
    assert (await call("GET", f"/api/dog/{dog.pk}", app=app)).json()["name"] == "Rex"
    assert (await call("GET", "/api/cat/1", app=app)).body == b"page"
    assert (await call("GET", "/chat/lobby", app=app)).body == b"page"
    assert seen == ["/api/cat/1", "/chat/lobby"]


async def test_an_accept_header_refusing_event_streams_gets_rest():
    dog = await db(Dog.objects.create)(name="Rex")
    accept = [(b"accept", b"text/event-stream;q=0, application/json")]
    response = await call("GET", f"/dog/{dog.pk}", headers=accept)
    assert (response.status, response.json()["name"]) == (200, "Rex")


# MessagePack and CBOR ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("accept", "suffix", "loads"),
    [
        (b"application/x-msgpack", "", lambda body: __import__("msgpack").unpackb(body)),
        (b"application/cbor", "", lambda body: __import__("cbor2").loads(body)),
        (None, ".msgpack", lambda body: __import__("msgpack").unpackb(body)),
        (None, ".cbor", lambda body: __import__("cbor2").loads(body)),
    ],
)
async def test_binary_formats_by_accept_or_suffix_answer_the_same_value_as_json(accept, suffix, loads):
    dog = await db(Dog.objects.create)(name="Rex", breed="Collie", age=3)
    as_json = (await call("GET", f"/dog/{dog.pk}")).json()
    headers = [(b"accept", accept)] if accept else []
    response = await call("GET", f"/dog/{dog.pk}{suffix}", headers=headers)
    assert response.status == 200
    assert response.headers["content-type"] in ("application/x-msgpack", "application/cbor")
    assert loads(response.body) == as_json == {"id": dog.pk, "name": "Rex", "breed": "Collie", "age": 3}


async def test_a_patch_body_in_cbor_or_msgpack_is_decoded_by_its_content_type(editor):
    import cbor2
    import msgpack

    dog = await db(Dog.objects.create)(name="Rex", age=3)
    for content_type, body in (
        (b"application/cbor", cbor2.dumps({"age": 4})),
        (b"application/x-msgpack", msgpack.packb({"age": 5})),
    ):
        response = await call("PATCH", f"/dog/{dog.pk}", raw=body, headers=[*editor, (b"content-type", content_type)])
        assert response.status == 200, response.body
    assert (await db(row)(dog.pk))["age"] == 5
    garbage = await call(
        "PATCH", f"/dog/{dog.pk}", raw=b"\xc1\xff", headers=[*editor, (b"content-type", b"application/x-msgpack")]
    )
    assert garbage.status == 400


# Bodies a browser form of another site can send, and values a form field would read as text


@pytest.mark.parametrize(
    "content_type", [b"text/plain", b"application/x-www-form-urlencoded", b"multipart/form-data; boundary=x", None]
)
async def test_a_write_whose_body_is_not_json_msgpack_or_cbor_is_refused_415_even_with_basic(editor, content_type):
    # A page of another site can post a form (text/plain with a JSON-looking body) with
    # Basic credentials the browser cached after a 401 challenge: never a write.
    headers = [*editor, (b"content-type", content_type)] if content_type else [*editor, (b"content-type", b"")]
    response = await call("POST", "/dog/", raw=b'{"name": "Forged"}', headers=headers)
    assert response.status == 415
    assert not await db(Dog.objects.filter(name="Forged").exists)()
    vendor_json = await call(
        "POST", "/dog/", raw=b'{"name": "Vendor"}', headers=[*editor, (b"content-type", b"application/vnd.api+json")]
    )
    assert vendor_json.status == 201


@pytest.mark.parametrize(
    ("body", "field"),
    [
        (b'{"name": ["a", "b"]}', "name"),
        (b'{"name": {"x": 1}}', "name"),
        (b'{"name": true}', "name"),
        (b'{"age": NaN}', "age"),
        (b'{"age": Infinity}', "age"),
    ],
)
async def test_values_of_the_wrong_kind_are_refused_naming_the_field_not_stored_as_text(editor, body, field):
    dog = await db(Dog.objects.create)(name="Rex", age=3)
    response = await call("PATCH", f"/dog/{dog.pk}", raw=body, headers=editor)
    assert response.status == 400
    assert field in response.json()["errors"]
    assert await db(row)(dog.pk) == {"id": dog.pk, "name": "Rex", "breed": "", "age": 3}


async def test_a_deeply_nested_body_and_a_huge_offset_are_400_not_500(editor):
    dog = await db(Dog.objects.create)(name="Rex")
    nested = b"[" * 100_000 + b"]" * 100_000
    assert (await call("PATCH", f"/dog/{dog.pk}", raw=nested, headers=editor)).status in (400, 413)
    deep = b'{"name": ' + b"[" * 5000 + b"]" * 5000 + b"}"
    assert (await call("PATCH", f"/dog/{dog.pk}", raw=deep, headers=editor)).status == 400
    huge = await call("GET", f"/dog/?offset={10**30}")
    assert huge.status == 400 and "offset" in huge.json()["errors"]


async def test_a_put_reads_the_record_once_before_writing_it(editor, monkeypatch):
    """One read of the row before the UPDATE: the visibility check's read is the locked
    one (``SELECT ... FOR UPDATE`` where the database has row locks), not a second read.
    One after it: the row the change's frame is built from is also the answer."""
    from django.db import connection
    from django.db.backends.utils import CursorWrapper

    dog = await db(Dog.objects.create)(name="Rex")
    statements: list[str] = []
    execute = CursorWrapper.execute

    def recording(self, sql, params=None):
        statements.append(sql)
        return execute(self, sql, params)

    monkeypatch.setattr(CursorWrapper, "execute", recording)
    response = await call("PUT", f"/dog/{dog.pk}", {"id": dog.pk, "name": "Rex II"}, headers=editor)
    assert response.status == 200 and response.json()["name"] == "Rex II"
    table = f'"{Dog._meta.db_table}"'
    update = next(i for i, sql in enumerate(statements) if sql.startswith(f"UPDATE {table}"))
    reads = [sql for sql in statements[:update] if sql.startswith("SELECT") and table in sql]
    assert len(reads) == 1, reads
    assert reads[0].endswith("FOR UPDATE") == connection.features.has_select_for_update
    after = [sql for sql in statements[update:] if sql.startswith("SELECT") and table in sql]
    assert len(after) == 1, "the row is read back once: the broadcast's read is the answer's too"
