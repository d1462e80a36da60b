"""Every close path reaches a real client, under daphne and under uvicorn.

Daphne cannot send 1008, 1009, 1011 or 1013 (autobahn refuses them); there the client
gets the documented fallback 4000 + (code - 1000). Never a silent socket left open.
"""

from __future__ import annotations

import json
import time

import pytest
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import connect

from harper_resources import closing
from harper_resources.closing import fallback
from tests.live import ADMIN_USER, DemoServer, run_script
from tests.test_live_security import basic

LIMITS = {
    "HARPER_RESOURCES_MAX_MESSAGE_BYTES": "4096",
    "HARPER_RESOURCES_RECEIVE_QUEUE_SIZE": "8",
    "HARPER_RESOURCES_SEND_QUEUE_SIZE": "8",
    # The per-client message rate would close the slow-client case's flood with 1008 first.
    "HARPER_RESOURCES_MESSAGE_RATE": "100000.0",
    "HARPER_RESOURCES_MESSAGE_BURST": "100000",
}
READER, READER_PASSWORD = "reader", "reader-password-for-tests"


async def test_a_close_code_the_server_refuses_is_sent_as_its_4000_fallback():
    sent = []

    async def autobahn_like_send(message):
        if message["code"] != 1000 and not 3000 <= message["code"] <= 4999:
            raise Exception(f"invalid close code {message['code']}")
        sent.append(message["code"])

    for code in (1008, 1009, 1011, 1013, 1000, 3000, 4404):
        await closing.close(autobahn_like_send, code, "")
    assert sent == [4008, 4009, 4011, 4013, 1000, 3000, 4404]


@pytest.fixture(scope="module", params=["daphne", "uvicorn"])
def server(request, tmp_path_factory):
    """The demo plus tests.live_asgi's routes, with small limits, and a user who may
    log in but has no permission."""
    server = DemoServer(
        tmp_path_factory.mktemp(request.param),
        env=LIMITS,
        server=request.param,
        application="tests.live_asgi:application",
    ).prepare()
    run_script(
        "from django.contrib.auth.models import User\n"
        f"User.objects.create_user({READER!r}, password={READER_PASSWORD!r})",
        server.env,
    )
    server.start(prepare=False)
    yield server
    server.stop()


def nothing(sock):
    pass


def send(value):
    return lambda sock: sock.send(json.dumps(value))


def flood(sock):
    for n in range(50):  # the resource reads the first, then none: 8 may wait unread
        sock.send(json.dumps({"n": n}))


def too_big(sock):
    sock.send("x" * 5000)  # over the 4096 bytes allowed, under daphne's own 1 MiB limit


def never_read(sock):
    # Echoed notes the client does not read (max_queue=1): once the socket buffers (a few
    # MB) are full, more than 8 frames wait for it. Only a server with backpressure
    # (uvicorn) makes them wait; the close code comes after what is buffered.
    note = "x" * 4000
    for _ in range(4000):
        sock.send(json.dumps({"dogId": "341", "note": note}))


CASES = {
    "wrong password": ("/me", basic(ADMIN_USER, "wrong"), nothing, 3000),
    "no permission": ("/private-dog/341", basic(READER, READER_PASSWORD), nothing, 3003),
    "unknown path": ("/cat/1", {}, nothing, 4404),
    "flood of unread messages": ("/stuck-reader", {}, flood, 1008),
    "frame too big": ("/dog/341", {}, too_big, 1009),
    "generator error": ("/notes/341", {}, send({"other": 1}), 1011),
    "connect() not iterable": ("/returns-number/1", {}, nothing, 1011),
    "raised CloseConnection": ("/raises-close/1", {}, send({}), 1011),
}


def expected_code(server: str, code: int) -> int:
    if server == "daphne":
        return fallback(code) or code
    return code


@pytest.mark.parametrize("case", CASES)
def test_every_close_reaches_a_real_client_within_two_seconds(server, case):
    assert_closes(server, *CASES[case])


# Daphne gives no backpressure (a send never waits for the client), so no frame ever
# waits in a stream for a client that does not read: 1013 cannot happen there.
@pytest.mark.parametrize("server", ["uvicorn"], indirect=True, scope="module")
def test_a_slow_client_gets_1013_within_two_seconds_of_reading_again(server):
    assert_closes(server, "/status/341", {}, never_read, 1013)


def assert_closes(server, path, headers, act, code):
    """Open ``path``, ``act``, then read: the close code (or its fallback under daphne)
    arrives within 2 s."""
    # No compression: the slow client's echoes must fill the socket buffers as they are.
    with connect(
        server.ws_url + path, additional_headers=headers, open_timeout=10, max_queue=1, compression=None
    ) as sock:
        try:
            act(sock)
        except ConnectionClosed:
            pass  # closed before the client sent everything: the code is read below
        started = time.monotonic()
        with pytest.raises(ConnectionClosed):
            while True:
                sock.recv(timeout=max(0.01, started + 2 - time.monotonic()))
        assert sock.close_code == expected_code(server.server, code)
        assert time.monotonic() - started < 2
