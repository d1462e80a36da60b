"""MessagePack and CBOR against the demo served by daphne and by uvicorn, with a real
WebSocket client, and changes made through the admin over HTTP."""

from __future__ import annotations

import cbor2
import msgpack
import pytest
from websockets.sync.client import connect

from tests.live import AdminClient, DemoServer

DECODE = {"msgpack": msgpack.unpackb, "cbor": cbor2.loads}


@pytest.fixture(scope="module", params=["daphne", "uvicorn"])
def server(request, tmp_path_factory):
    server = DemoServer(tmp_path_factory.mktemp(f"codecs-{request.param}"), server=request.param).start()
    yield server
    server.stop()


def open_socket(server, path, accept=None):
    headers = {"Accept": accept} if accept else None
    return connect(server.ws_url + path, origin=server.url, open_timeout=10, additional_headers=headers)


def recv(sock, codec, timeout=10):
    """The next frame, which must be binary, decoded by ``codec``."""
    data = sock.recv(timeout=timeout)
    assert isinstance(data, bytes), f"a text frame on a {codec} socket: {data!r}"
    return DECODE[codec](data)


def record_frame(sock, codec, timeout=10):
    """The next record frame, skipping the demo's status pulse."""
    while True:
        frame = recv(sock, codec, timeout)
        if "status" not in frame:
            return frame


def test_the_harper_notes_test_gets_a_msgpack_reply_to_a_msgpack_message(server):
    with open_socket(server, "/notes/341.msgpack") as sock:
        sock.send(msgpack.packb({"dogId": "341", "note": "good with kids"}))
        assert recv(sock, "msgpack") == {"dogId": "341", "note": "good with kids"}


def test_accept_cbor_on_a_record_path_gets_cbor_puts_of_admin_changes(server):
    admin = AdminClient(server.url)
    pk = admin.add_dog("Cbor", "Beagle", 2)
    with open_socket(server, f"/dog/{pk}", accept="application/cbor") as sock:
        first = record_frame(sock, "cbor")
        assert (first["type"], first["id"], first["value"]["name"]) == ("put", pk, "Cbor")
        admin.change_dog(pk, "Cbor II", "Beagle", 3)
        change = record_frame(sock, "cbor")
        assert change["value"] == {"id": pk, "name": "Cbor II", "breed": "Beagle", "age": 3}
        assert change["version"] > first["version"]


def test_a_msgpack_suffix_on_a_record_path_gets_puts_notes_and_survives_bad_input(server):
    admin = AdminClient(server.url)
    pk = admin.add_dog("Packed", "Collie", 1)
    with open_socket(server, f"/dog/{pk}.msgpack") as sock:
        first = record_frame(sock, "msgpack")
        assert (first["type"], first["id"], first["value"]["name"]) == ("put", pk, "Packed")
        sock.send(b"\xc1 is no MessagePack")
        sock.send(msgpack.packb({"dogId": pk, "note": "sent as msgpack"}))
        note = record_frame(sock, "msgpack")
        assert (note["type"], note["value"]) == ("message", {"dogId": str(pk), "note": "sent as msgpack"})
        admin.change_dog(pk, "Packed II", "Collie", 1)
        assert record_frame(sock, "msgpack")["value"]["name"] == "Packed II", "still open after bad input"
