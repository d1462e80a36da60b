"""Basic logins are cached and hashed off the shared thread; Bearer tokens."""

from __future__ import annotations

import asyncio
import time

import pytest
from django.core.management import call_command
from django.test import override_settings
from django.utils.crypto import salted_hmac
from hypothesis import given, settings
from hypothesis import strategies as st

from harper_resources import credentials, tokens
from project.dogs.models import Dog
from tests.conftest import db
from tests.hashers import SETTINGS, CountingHasher
from tests.test_auth import basic, make_user

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture(autouse=True)
def counting_hasher(monkeypatch):
    """Passwords hashed with CountingHasher (no delay unless a test sets one), and an
    empty credential cache."""
    credentials.forget()
    monkeypatch.setattr(CountingHasher, "verified", 0)
    with override_settings(PASSWORD_HASHERS=SETTINGS):
        yield CountingHasher
    credentials.forget()


def bearer(token):
    return [(b"authorization", f"Bearer {token}".encode())]


async def test_a_second_basic_handshake_with_the_same_password_hashes_nothing_but_a_wrong_one_does(ws, counting_hasher):
    await db(make_user)("member")
    first = await ws("/members", headers=basic("member", "pw-123456"))
    assert await first.receive() == {"user": "member"}
    assert counting_hasher.verified == 1
    for _ in range(3):
        again = await ws("/members", headers=basic("member", "pw-123456"))
        assert await again.receive() == {"user": "member"}
    assert counting_hasher.verified == 1, "the verified login was remembered"
    for _ in range(2):
        assert await (await ws("/members", headers=basic("member", "wrong"))).closed_with() == 3000
    assert counting_hasher.verified == 3, "a wrong password is never cached"


async def test_a_password_change_invalidates_the_cached_login_and_every_token(ws):
    user = await db(make_user)("member")
    token = await db(tokens.make_token)(user)
    assert await (await ws("/members", headers=basic("member", "pw-123456"))).receive() == {"user": "member"}
    assert await (await ws("/members", headers=bearer(token))).receive() == {"user": "member"}

    def change_password():
        user.set_password("new-password-1")
        user.save()

    await db(change_password)()
    assert await (await ws("/members", headers=basic("member", "pw-123456"))).closed_with() == 3000
    assert await (await ws("/members", headers=bearer(token))).closed_with() == 3000
    assert await (await ws("/members", headers=basic("member", "new-password-1"))).receive() == {"user": "member"}


async def test_a_token_from_the_command_logs_in_and_an_expired_or_forged_one_closes_3000(ws, capsys):
    await db(make_user)("member")
    await db(call_command)("resource_token", "member", "--expires", "1")
    token = capsys.readouterr().out.strip()
    assert "\n" not in token
    assert await (await ws("/members", headers=bearer(token))).receive() == {"user": "member"}
    dog = await db(Dog.objects.create)(name="Rex")
    for forged in (token[:-2] + "xx", "", "not-a-token"):
        assert await (await ws(f"/dog/{dog.pk}", headers=bearer(forged))).closed_with() == 3000
    await asyncio.sleep(2.1)
    assert await (await ws("/members", headers=bearer(token))).closed_with() == 3000
    public = await ws(f"/dog/{dog.pk}", headers=bearer(token))
    assert await public.closed_with() == 3000, "an expired token is refused even on a public resource"


async def test_wrong_passwords_being_hashed_do_not_delay_an_anonymous_client(ws, counting_hasher, monkeypatch):
    await db(make_user)("member")
    dog = await db(Dog.objects.create)(name="Rex")
    monkeypatch.setattr(CountingHasher, "delay", 0.15)
    attackers = [asyncio.ensure_future(ws("/members", headers=basic("member", f"wrong-{n}"))) for n in range(10)]
    await asyncio.sleep(0.05)  # the wrong passwords are being checked
    started = time.monotonic()
    visitor = await ws(f"/dog/{dog.pk}")
    assert (await visitor.receive(timeout=10))["value"]["name"] == "Rex"
    waited = time.monotonic() - started
    for client in await asyncio.gather(*attackers):
        assert await client.closed_with(timeout=10) == 3000
    assert waited < 0.5, f"the anonymous client waited {waited:.2f} s behind password hashing"


@settings(max_examples=60, deadline=None)
@given(salt=st.text(max_size=40), value=st.text(max_size=200), secret=st.text(min_size=1, max_size=60))
def test_the_keyed_digest_is_djangos_salted_hmac_for_any_secret(salt, value, secret):
    # Fingerprints are inside every Bearer token handed out, and cached logins are keyed
    # by these digests: the derived-once key must give Django's digest, and follow a
    # change of SECRET_KEY.
    with override_settings(SECRET_KEY=secret):
        assert credentials.keyed_digest(salt, value) == salted_hmac(salt, value, algorithm="sha256").hexdigest()
