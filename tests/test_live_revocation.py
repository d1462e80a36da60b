"""Open sockets lose access when their user does, against a real server (daphne)."""

from __future__ import annotations

import contextlib
import json
import subprocess
import sys
import time

import pytest
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import connect

from tests.live import ROOT, AdminClient, DemoServer, run_script
from tests.test_live_security import basic

PASSWORD = "pw-for-revocation-tests"
USERS = ("loses-permission", "deactivated", "changes-password", "token-holder")


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """The demo plus tests.live_asgi's /private-dog/ (the view permission), with users
    who may view dogs."""
    server = DemoServer(tmp_path_factory.mktemp("revocation"), application="tests.live_asgi:application").prepare()
    run_script(
        "from django.contrib.auth.models import Permission, User\n"
        "view = Permission.objects.get(codename='view_dog')\n"
        f"for name in {USERS!r}:\n"
        f"    User.objects.create_user(name, password={PASSWORD!r}).user_permissions.add(view)\n",
        server.env,
    )
    server.start(prepare=False)
    yield server
    server.stop()


def wait_for_close(sock, seconds):
    started = time.monotonic()
    with pytest.raises(ConnectionClosed):
        while True:
            sock.recv(timeout=max(0.01, seconds - (time.monotonic() - started)))
    return sock.close_code, time.monotonic() - started


def test_open_sockets_close_within_seconds_once_their_user_loses_access(server):
    token = subprocess.run(
        [sys.executable, "manage.py", "resource_token", "token-holder"],
        cwd=ROOT,
        env=server.env,
        check=True,
        capture_output=True,
        text=True,
    ).stdout.strip()
    admin = AdminClient(server.url)
    session = next(cookie.value for cookie in admin.cookies if cookie.name == "sessionid")
    url = server.ws_url + "/private-dog/341"
    opened = contextlib.ExitStack()
    sockets = {
        name: opened.enter_context(connect(url, **options))
        for name, options in {
            "loses-permission": {"additional_headers": basic("loses-permission", PASSWORD)},
            "deactivated": {"additional_headers": basic("deactivated", PASSWORD)},
            "changes-password": {"additional_headers": basic("changes-password", PASSWORD)},
            "token-holder": {"additional_headers": {"Authorization": f"Bearer {token}"}},
            "admin-session": {"origin": server.url, "additional_headers": {"Cookie": f"sessionid={session}"}},
        }.items()
    }
    for sock in sockets.values():
        assert json.loads(sock.recv(timeout=3))["id"] == 341
    run_script(
        "from django.contrib.auth.models import User\n"
        "from django.contrib.sessions.models import Session\n"
        "User.objects.get(username='loses-permission').user_permissions.clear()\n"
        "User.objects.filter(username='deactivated').update(is_active=False)\n"
        "for name in ('changes-password', 'token-holder'):\n"
        "    user = User.objects.get(username=name)\n"
        "    user.set_password('a-new-password')\n"
        "    user.save()\n"
        "Session.objects.all().delete()\n",
        server.env,
    )
    with opened:
        closed = {name: wait_for_close(sock, 7.0) for name, sock in sockets.items()}
    codes = {name: code for name, (code, _) in closed.items()}
    assert codes == {
        "loses-permission": 3003,
        "deactivated": 3000,
        "changes-password": 3000,
        "token-holder": 3000,
        "admin-session": 3000,
    }
    assert max(seconds for _, seconds in closed.values()) < 6.5, closed
    with connect(url, additional_headers=basic("changes-password", "a-new-password")) as again:
        assert json.loads(again.recv(timeout=3))["id"] == 341, "a fresh login streams again"
