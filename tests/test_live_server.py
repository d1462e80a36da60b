"""The demo as users run it: daphne in its own process, a real WebSocket client, and
changes made through the Django admin over HTTP."""

from __future__ import annotations

import json

import pytest
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import connect


def open_socket(server, path):
    return connect(server.ws_url + path, origin=server.url, open_timeout=5)


def recv(sock, timeout=3):
    return json.loads(sock.recv(timeout=timeout))


def assert_silent(sock, timeout=0.5):
    with pytest.raises(TimeoutError):
        sock.recv(timeout=timeout)


def record_frame(sock, timeout=3):
    """The next record frame, skipping the demo's status pulse."""
    while True:
        frame = recv(sock, timeout)
        if "status" not in frame:
            return frame


def test_a_real_client_follows_create_update_and_delete_made_in_the_admin(demo_server, admin):
    pk = admin.add_dog("Fido", "Beagle", 2)
    with open_socket(demo_server, f"/dog/{pk}") as sock:
        first = record_frame(sock)
        assert (first["type"], first["id"], first["value"]["name"]) == ("put", pk, "Fido")
        admin.change_dog(pk, "Fido II", "Beagle", 3)
        update = record_frame(sock)
        assert update["value"] == {"id": pk, "name": "Fido II", "breed": "Beagle", "age": 3}
        admin.delete_dog(pk)
        assert record_frame(sock)["type"] == "delete"


def test_the_collection_path_lists_every_dog_then_follows_new_ones(demo_server, admin):
    with open_socket(demo_server, "/dog/") as sock:
        initial = []
        try:
            while True:
                initial.append(recv(sock, timeout=1))
        except TimeoutError:
            pass
        assert [f["id"] for f in initial] == sorted(f["id"] for f in initial)
        assert {341, 342, 343} <= {f["id"] for f in initial}, "the sample dogs are listed"
        pk = admin.add_dog("Newcomer")
        created = recv(sock)
        assert (created["type"], created["id"], created["value"]["name"]) == ("put", pk, "Newcomer")


def test_a_change_to_another_dog_does_not_reach_a_record_socket(demo_server, admin):
    watched, other = admin.add_dog("Watched"), admin.add_dog("Other")
    with open_socket(demo_server, f"/dog/{watched}") as sock:
        record_frame(sock)
        admin.change_dog(other, "Other, renamed")
        admin.change_dog(watched, "Watched, renamed")
        assert record_frame(sock)["value"]["name"] == "Watched, renamed", "the first record frame is our own dog's"


def test_an_unknown_path_closes_with_4404(demo_server):
    with open_socket(demo_server, "/cat/1") as sock:
        with pytest.raises(ConnectionClosed):
            sock.recv(timeout=3)
        assert sock.close_code == 4404


def test_the_dog_profile_page_is_served(demo_server):
    import urllib.request

    with urllib.request.urlopen(demo_server.url + "/dogs/341/", timeout=5) as response:
        body = response.read().decode()
    assert 'id="dog-name"' in body and "/static/harper_resources/client.js" in body
