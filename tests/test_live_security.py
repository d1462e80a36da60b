"""Authentication, origins and hostile frames against the real demo server (daphne)."""

from __future__ import annotations

import base64
import json
import os
import socket
import subprocess
import sys

import pytest
from websockets.exceptions import ConnectionClosed, InvalidStatus
from websockets.sync.client import connect

from tests.live import ADMIN_PASSWORD, ADMIN_USER, ROOT


def basic(username, password):
    return {"Authorization": "Basic " + base64.b64encode(f"{username}:{password}".encode()).decode()}


def close_code(sock, timeout=3):
    with pytest.raises(ConnectionClosed):
        while True:
            sock.recv(timeout=timeout)
    return sock.close_code


def test_a_browser_session_cookie_is_the_logged_in_user_on_the_socket(demo_server, admin):
    session = next(cookie.value for cookie in admin.cookies if cookie.name == "sessionid")
    with connect(
        demo_server.ws_url + "/me", origin=demo_server.url, additional_headers={"Cookie": f"sessionid={session}"}
    ) as sock:
        assert json.loads(sock.recv(timeout=3)) == {"username": ADMIN_USER, "isStaff": True}


def test_a_script_logs_in_with_http_basic(demo_server):
    with connect(demo_server.ws_url + "/me", additional_headers=basic(ADMIN_USER, ADMIN_PASSWORD)) as sock:
        assert json.loads(sock.recv(timeout=3))["username"] == ADMIN_USER


def test_a_wrong_password_and_no_credentials_both_close_with_3000(demo_server):
    with connect(demo_server.ws_url + "/me", additional_headers=basic(ADMIN_USER, "wrong")) as sock:
        assert close_code(sock) == 3000  # daphne does not forward close reasons, only codes
    with connect(demo_server.ws_url + "/me") as sock:
        assert close_code(sock) == 3000
    with connect(demo_server.ws_url + "/dog/341", additional_headers=basic(ADMIN_USER, "wrong")) as sock:
        assert close_code(sock) == 3000, "bad credentials are refused even on a public resource"


def test_a_page_of_another_site_cannot_open_a_socket(demo_server):
    with pytest.raises(InvalidStatus) as refused:
        connect(demo_server.ws_url + "/dog/341", origin="http://evil.example", open_timeout=5)
    assert refused.value.response.status_code == 403


def test_a_client_without_origin_is_not_a_browser_and_may_connect(demo_server):
    with connect(demo_server.ws_url + "/dog/341", open_timeout=5) as sock:
        assert json.loads(sock.recv(timeout=3))["id"] == 341


def test_a_frame_over_the_limit_ends_that_connection_and_the_server_stays_up(demo_server):
    with connect(demo_server.ws_url + "/dog/341") as bystander:
        bystander.recv(timeout=3)
        with connect(demo_server.ws_url + "/dog/341", max_size=None) as sock:
            sock.recv(timeout=3)
            try:
                sock.send(b"\0" * (2 * 1024 * 1024))
            except ConnectionClosed:
                pass  # daphne may drop the connection while the frame is still being sent
            # daphne refuses frames over its own 1 MiB limit by dropping the connection
            # (1006) before the app sees them; under it, harper_resources closes with 1009
            # (tested at the ASGI level in test_hostile_input).
            assert close_code(sock) in (1006, 1009)
        with connect(demo_server.ws_url + "/dog/341") as sock:
            assert json.loads(sock.recv(timeout=3))["id"] == 341
        assert "status" in json.loads(bystander.recv(timeout=3)), "the other socket carries on"


def raw_websocket(port, path):
    """A socket after a hand-made handshake, for frames no client library will send."""
    sock = socket.create_connection(("127.0.0.1", port), timeout=5)
    key = base64.b64encode(os.urandom(16)).decode()
    sock.sendall(
        (
            f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n"
        ).encode()
    )
    response = b""
    while b"\r\n\r\n" not in response:
        response += sock.recv(4096)
    assert b" 101 " in response.split(b"\r\n")[0], response
    return sock


def masked_frame(opcode, payload):
    mask = os.urandom(4)
    masked = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
    assert len(payload) < 126
    return bytes([0x80 | opcode, 0x80 | len(payload)]) + mask + masked


def test_invalid_utf8_in_a_text_frame_closes_that_socket_only(demo_server):
    with connect(demo_server.ws_url + "/dog/341") as bystander:
        bystander.recv(timeout=3)
        sock = raw_websocket(demo_server.port, "/dog/341")
        sock.sendall(masked_frame(0x1, b'{"note": "\xff\xfe"}'))
        ended = False
        try:
            while sock.recv(65536):
                pass
            ended = True
        except ConnectionResetError:
            ended = True
        except TimeoutError:
            pass
        sock.close()
        assert ended, "daphne ends a connection that sends invalid UTF-8 text (it drops it; no close frame)"
        with connect(demo_server.ws_url + "/dog/341") as again:
            assert json.loads(again.recv(timeout=3))["id"] == 341
        assert json.loads(bystander.recv(timeout=3)) == {"dogId": "341", "status": "connection active"}, (
            "the other socket on the same dog is unaffected"
        )


def test_a_token_from_manage_py_resource_token_logs_a_script_in_with_bearer(demo_server):
    printed = subprocess.run(
        [sys.executable, "manage.py", "resource_token", ADMIN_USER, "--expires", "600"],
        cwd=ROOT,
        env=demo_server.env,
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    token = printed.strip()
    assert printed == token + "\n", "the token is printed on a line of its own"
    with connect(demo_server.ws_url + "/me", additional_headers={"Authorization": f"Bearer {token}"}) as sock:
        assert json.loads(sock.recv(timeout=3))["username"] == ADMIN_USER
    with connect(demo_server.ws_url + "/dog/341", additional_headers={"Authorization": f"Bearer {token}x"}) as sock:
        assert close_code(sock) == 3000, "a forged token is refused even on a public resource"
