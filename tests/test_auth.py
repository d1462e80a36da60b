"""Who may connect: session cookie and Basic auth, allow_read, narrowed collections."""

from __future__ import annotations

import base64
import logging

import pytest
from django.contrib.auth.models import Permission, User
from django.test import Client as HttpClient

from project.dogs.models import Dog
from tests.conftest import db

pytestmark = pytest.mark.django_db(transaction=True)


def basic(username, password):
    token = base64.b64encode(f"{username}:{password}".encode()).decode()
    return [(b"authorization", f"Basic {token}".encode())]


def make_user(username, password="pw-123456", perms=()):
    user = User.objects.create_user(username, password=password)
    for codename in perms:
        user.user_permissions.add(Permission.objects.get(codename=codename))
    return user


def session_cookie(user):
    client = HttpClient()
    client.force_login(user)
    return [(b"cookie", f"sessionid={client.cookies['sessionid'].value}".encode())]


async def test_an_anonymous_client_of_a_model_resource_is_closed_with_3000(ws):
    dog = await db(Dog.objects.create)(name="Rex")
    client = await ws(f"/private-dog/{dog.pk}")
    message = await client.receive_raw()
    assert (message["code"], message["reason"]) == (3000, "Must login")


async def test_a_user_without_the_view_permission_gets_3003_and_no_frame_of_the_dog(ws):
    dog = await db(Dog.objects.create)(name="Secret Rex")
    await db(make_user)("nobody")
    for path in (f"/private-dog/{dog.pk}", "/private-dog/"):
        client = await ws(path, headers=basic("nobody", "pw-123456"))
        message = await client.receive_raw()
        assert (message["type"], message["code"]) == ("websocket.close", 3003)
        assert "Secret" not in str(message)
        assert await client.nothing()


async def test_a_user_with_the_view_permission_streams_the_dog(ws):
    dog = await db(Dog.objects.create)(name="Rex")
    await db(make_user)("viewer", perms=["view_dog"])
    client = await ws(f"/private-dog/{dog.pk}", headers=basic("viewer", "pw-123456"))
    assert (await client.receive())["value"]["name"] == "Rex"


async def test_the_session_cookie_of_a_logged_in_user_is_that_user_on_the_socket(ws):
    user = await db(make_user)("browser-user", perms=["view_dog"])
    cookie = await db(session_cookie)(user)
    dog = await db(Dog.objects.create)(name="Rex")
    client = await ws(f"/private-dog/{dog.pk}", headers=cookie)
    assert (await client.receive())["value"]["name"] == "Rex"
    members = await ws("/members", headers=cookie)
    assert await members.receive() == {"user": "browser-user"}


async def test_a_wrong_password_is_never_taken_as_an_anonymous_visit(ws):
    await db(make_user)("viewer", perms=["view_dog"])
    dog = await db(Dog.objects.create)(name="Rex")
    for path in (f"/private-dog/{dog.pk}", f"/dog/{dog.pk}", "/members"):
        client = await ws(path, headers=basic("viewer", "wrong"))
        assert await client.closed_with() == 3000, f"{path} must refuse bad credentials, even when public"


@pytest.mark.parametrize(
    "header",
    [b"Basic !!!notbase64", b"Basic " + base64.b64encode(b"no-colon"), b"Basic " + base64.b64encode(b"\xff\xfe:x")],
)
async def test_malformed_basic_credentials_close_with_3000(ws, header):
    client = await ws("/members", headers=[(b"authorization", header)])
    assert await client.closed_with() == 3000


async def test_an_inactive_user_cannot_log_in_with_basic(ws):
    user = await db(make_user)("gone", perms=["view_dog"])
    user.is_active = False
    await db(user.save)()
    client = await ws("/members", headers=basic("gone", "pw-123456"))
    assert await client.closed_with() == 3000


async def test_a_plain_resource_needs_a_login_by_default(ws):
    assert await (await ws("/members")).closed_with() == 3000
    await db(make_user)("member")
    client = await ws("/members", headers=basic("member", "pw-123456"))
    assert await client.receive() == {"user": "member"}


async def test_every_refusal_is_logged_at_info_with_path_user_and_code_but_no_credentials(ws, caplog):
    nobody = await db(make_user)("nobody", password="s3cret-password")
    with caplog.at_level(logging.INFO, logger="harper_resources"):
        client = await ws("/members?token=s3cret-token", headers=basic("nobody", "wrong-s3cret"))
        assert await client.closed_with() == 3000
        client = await ws("/private-dog/1", headers=basic("nobody", "s3cret-password"))
        assert await client.closed_with() == 3003
        client = await ws("/members")
        assert await client.closed_with() == 3000
        client = await ws("/cat/1?token=s3cret-token")
        assert await client.closed_with() == 4404
    refusals = [r.getMessage() for r in caplog.records if r.levelno == logging.INFO and "refused" in r.getMessage()]
    assert refusals == [
        "harper_resources: refused /members for anonymous (credentials refused): close 3000",
        f"harper_resources: refused /private-dog/1 for user {nobody.pk}: close 3003",
        "harper_resources: refused /members for anonymous: close 3000",
        "harper_resources: refused /cat/1 for anonymous: close 4404",
    ]
    assert "s3cret" not in caplog.text and "nobody" not in caplog.text


async def test_allow_read_may_be_async(ws):
    dog = await db(Dog.objects.create)(name="Rex")
    await db(make_user)("async-friend")
    await db(make_user)("stranger")
    friend = await ws(f"/async-allow/{dog.pk}", headers=basic("async-friend", "pw-123456"))
    assert (await friend.receive())["type"] == "put"
    stranger = await ws(f"/async-allow/{dog.pk}", headers=basic("stranger", "pw-123456"))
    assert await stranger.closed_with() == 3003


async def test_a_narrowed_collection_shows_only_allowed_records_and_hides_those_that_leave(ws):
    young = await db(Dog.objects.create)(name="Pup", age=1)
    await db(Dog.objects.create)(name="Old timer", age=12)
    client = await ws("/young-dogs/")
    first = await client.receive()
    assert first["value"]["name"] == "Pup"
    assert await client.nothing(), "the old dog is not in the first frames"
    old = await db(Dog.objects.create)(name="Another old one", age=15)
    old.name = "Still old"
    await db(old.save)()
    old_pk = old.pk
    await db(old.delete)()
    assert await client.nothing(), "changes and deletes of hidden records never arrive"
    young.age = 11
    await db(young.save)()
    gone = await client.receive()
    assert (gone["type"], gone["id"]) == ("delete", young.pk), "a record that leaves the view is deleted for the client"
    young.age = 2
    await db(young.save)()
    assert (await client.receive())["value"]["age"] == 2
    assert old_pk != young.pk


async def test_a_narrowed_record_path_does_not_show_a_hidden_record(ws):
    old = await db(Dog.objects.create)(name="Old", age=14)
    client = await ws(f"/young-dogs/{old.pk}")
    old.name = "Older"
    await db(old.save)()
    assert await client.nothing()
