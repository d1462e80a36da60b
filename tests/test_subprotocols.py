"""Offered subprotocols: ``new WebSocket(url, ["json"])`` connects, as on Harper.

A browser that offers subprotocols fails a connection whose accept names none
("Server sent no subprotocol", 1006), so every accept names one: the resource's choice
(by default the first offered), on refusals and unknown paths too.
"""

from __future__ import annotations

import json

import pytest
from channels.testing import WebsocketCommunicator
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import connect

from tests.live import DemoServer
from tests.routing import application


async def open_offering(path: str, subprotocols: list[str]) -> tuple[WebsocketCommunicator, str | None]:
    communicator = WebsocketCommunicator(application, path, subprotocols=subprotocols)
    connected, subprotocol = await communicator.connect(timeout=3)
    assert connected
    return communicator, subprotocol


async def test_the_first_offered_subprotocol_is_accepted_by_default_and_none_when_none_is_offered():
    communicator, subprotocol = await open_offering("/two-then-done/1", ["json", "other"])
    assert subprotocol == "json"
    assert await communicator.receive_json_from() == {"n": 1}
    await communicator.disconnect()
    communicator, subprotocol = await open_offering("/two-then-done/1", [])
    assert subprotocol is None
    await communicator.disconnect()


async def test_a_resource_accepts_the_first_offered_subprotocol_it_speaks():
    communicator, subprotocol = await open_offering("/speaks-harper/1", ["json", "harper"])
    assert subprotocol == "harper"
    await communicator.disconnect()


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize(("path", "code"), [("/members", 3000), ("/cat/1", 4404), ("/returns-number/1", 1011)])
async def test_a_refused_connection_accepts_the_offered_subprotocol_before_it_closes(path, code):
    communicator, subprotocol = await open_offering(path, ["json"])
    assert subprotocol == "json", "else a browser sees 1006, not the close code"
    assert (await communicator.receive_output(timeout=3))["code"] == code
    await communicator.disconnect()


@pytest.fixture(scope="module", params=["daphne", "uvicorn"])
def server(request, tmp_path_factory):
    server = DemoServer(tmp_path_factory.mktemp(request.param), server=request.param).start()
    yield server
    server.stop()


def test_a_real_client_offering_json_connects_and_streams(server):
    with connect(server.ws_url + "/dog/341", subprotocols=["json"], open_timeout=10) as sock:
        assert sock.subprotocol == "json"
        assert json.loads(sock.recv(timeout=3))["id"] == 341


@pytest.mark.parametrize(("path", "code"), [("/me", 3000), ("/cat/1", 4404)])
def test_a_real_client_offering_json_sees_the_close_code_of_a_refusal(server, path, code):
    with connect(server.ws_url + path, subprotocols=["json"], open_timeout=10) as sock:
        assert sock.subprotocol == "json"
        with pytest.raises(ConnectionClosed):
            sock.recv(timeout=3)
        assert sock.close_code == code
