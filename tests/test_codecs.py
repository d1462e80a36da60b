"""MessagePack and CBOR: the codecs, how a client picks one, and binary frames on a socket."""

from __future__ import annotations

import datetime
import decimal
import json
import subprocess
import sys
import uuid

import cbor2
import msgpack
import pytest
from django.utils import timezone
from django.utils.functional import lazy
from hypothesis import given, settings
from hypothesis import strategies as st

from harper_resources import codecs, protocol
from harper_resources.exceptions import NotAcceptable
from project.dogs.models import Dog
from tests.conftest import db
from tests.live import ROOT
from tests.testapp.models import Gadget

BINARY = [codecs.MSGPACK, codecs.CBOR]
DECODE = {"msgpack": msgpack.unpackb, "cbor": cbor2.loads}


def odd_values():
    return {
        "at": timezone.make_aware(datetime.datetime(2026, 3, 4, 5, 6, 7, 891234), datetime.timezone.utc),
        "naive": datetime.datetime(2026, 3, 4, 5, 6, 7),
        "day": datetime.date(2026, 3, 4),
        "time": datetime.time(5, 6, 7, 891234),
        "took": datetime.timedelta(days=1, seconds=2),
        "price": decimal.Decimal("12.50"),
        "serial": uuid.UUID("12345678-1234-5678-1234-567812345678"),
        "lazy": lazy(lambda: "later", str)(),
        "tags": frozenset(["a"]),
        "nested": [{"n": 1, "pi": 3.25, "none": None, "yes": True}],
    }


# The codecs ------------------------------------------------------------------------------


@pytest.mark.parametrize("codec", [codecs.JSON, *BINARY], ids=lambda c: c.name)
def test_each_codec_carries_django_values_as_the_json_wire_format_does(codec):
    as_json = json.loads(protocol.encode(odd_values()))
    assert as_json["at"] == "2026-03-04T05:06:07.891Z" and as_json["price"] == "12.50"
    assert codec.loads(codec.dumps(odd_values())) == as_json
    assert codec.dumps_parsed(as_json) == codec.dumps(as_json), "a parsed frame value encodes the same either way"


@pytest.mark.parametrize("codec", BINARY, ids=lambda c: c.name)
def test_binary_codecs_write_their_own_format_and_keep_bytes_as_bytes(codec):
    data = codec.dumps({"blob": b"\x00\xff", "n": 2**40})
    assert DECODE[codec.name](data) == {"blob": b"\x00\xff", "n": 2**40}
    assert codecs.JSON.loads(codecs.JSON.dumps({"blob": b"\x00\xff"})) == {"blob": "AP8="}, "JSON: base64"


def json_values():
    """Values ``json.loads`` makes, with integers in MessagePack's range."""
    integers = st.integers(-(2**63), 2**64 - 1)
    scalars = st.none() | st.booleans() | integers | st.floats(allow_nan=False) | st.text(max_size=20)
    return st.recursive(
        scalars,
        lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4),
        max_leaves=20,
    )


@settings(max_examples=200, deadline=None)
@given(value=json_values(), codec=st.sampled_from(BINARY))
def test_any_json_value_round_trips_and_encodes_the_same_parsed_or_not(value, codec):
    assert codec.loads(codec.dumps(value)) == value
    assert codec.dumps_parsed(value) == codec.dumps(value)


@pytest.mark.parametrize("codec", BINARY, ids=lambda c: c.name)
def test_a_value_the_format_cannot_carry_raises_type_error(codec):
    with pytest.raises((TypeError, ValueError)):
        codec.dumps({"what": object()})


@pytest.mark.parametrize(
    ("codec", "data"),
    [
        (codecs.MSGPACK, b"\xc1"),  # a byte MessagePack never uses
        (codecs.MSGPACK, b"\x92\x01"),  # an array of two with one item
        (codecs.CBOR, b"\xff"),
        (codecs.CBOR, b"\xd8\x1c\x82\x01\xd8\x1d\x00"),  # a list that holds itself (shared references)
        (codecs.CBOR, cbor2.dumps(cbor2.CBORTag(35, "a+"))),  # a regular expression
        (codecs.CBOR, cbor2.dumps({(1, 2): 1})),  # a map key that is not a string
    ],
    ids=["msgpack-reserved", "msgpack-short", "cbor-break", "cbor-cycle", "cbor-regex", "cbor-tuple-key"],
)
def test_a_binary_client_frame_that_is_not_a_plain_value_arrives_as_octet_stream(codec, data):
    assert codec.decode_client_frame(data) == {"contentType": "application/octet-stream", "data": data}


# Negotiation ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("accept", "expected"),
    [
        (None, "json"),
        ("", "json"),
        ("*/*", "json"),
        ("application/json", "json"),
        ("application/x-msgpack", "msgpack"),
        ("application/msgpack", "msgpack"),
        ("application/vnd.msgpack", "msgpack"),
        (b"application/cbor", "cbor"),
        ("text/html, application/CBOR;q=0.9, application/json", "cbor"),
        ("application/cbor;q=0, application/x-msgpack", "msgpack"),
        ("text/html, application/*;q=0.5", "json"),
        ("text/html", None),
        ("text/event-stream", None),
    ],
)
def test_from_accept_picks_the_first_type_a_codec_serves(accept, expected):
    codec = codecs.from_accept(accept)
    assert (codec.name if codec else None) == expected


def test_from_accept_passes_over_a_missing_library_and_refuses_when_nothing_is_left(monkeypatch):
    monkeypatch.setattr(codecs.MSGPACK, "available", False)
    assert codecs.from_accept("application/x-msgpack, application/json") is codecs.JSON
    with pytest.raises(NotAcceptable) as refused:
        codecs.from_accept("application/x-msgpack")
    assert refused.value.code == 4406 and "application/x-msgpack" in refused.value.reason


def test_split_suffix_takes_a_codec_suffix_off():
    assert codecs.split_suffix("341.msgpack") == (codecs.MSGPACK, "341")
    assert codecs.split_suffix("/dog/341.cbor") == (codecs.CBOR, "/dog/341")
    assert codecs.split_suffix("341.json") == (None, "341.json")
    assert codecs.split_suffix("msgpack") == (None, "msgpack")


def test_by_content_type_reads_a_request_body_type():
    assert codecs.by_content_type("application/cbor; charset=binary") is codecs.CBOR
    assert codecs.by_content_type("application/json") is codecs.JSON
    assert codecs.by_content_type("text/plain") is None
    assert codecs.by_content_type(None) is None


def test_negotiate_prefers_the_path_suffix_and_strips_it_from_the_id():
    scope = {
        "path": "/dog/341.msgpack",
        "headers": [(b"accept", b"application/cbor")],
        "url_route": {"args": (), "kwargs": {"id": "341.msgpack"}},
    }
    assert codecs.negotiate(scope, "id") is codecs.MSGPACK
    assert scope["url_route"]["kwargs"] == {"id": "341"}
    assert codecs.negotiate({"path": "/dog/", "headers": [(b"Accept", b"application/cbor")]}, "id") is codecs.CBOR
    assert codecs.negotiate({"path": "/dog/", "headers": [(b"accept", b"text/html")]}, "id") is codecs.JSON
    assert codecs.negotiate({"path": "/dog/.cbor", "url_route": {"kwargs": {}}}, "id") is codecs.CBOR


def test_the_app_imports_and_serves_json_without_msgpack_or_cbor2_and_refuses_them_with_4406():
    script = """
import sys
sys.modules["msgpack"] = None
sys.modules["cbor2"] = None
import asyncio, django
django.setup()
from channels.testing import WebsocketCommunicator
from harper_resources import codecs
from tests.routing import application

async def main():
    assert not codecs.MSGPACK.available and not codecs.CBOR.available
    for path, headers in [("/seed/notes/1.msgpack", []), ("/seed/notes/1", [(b"accept", b"application/cbor")])]:
        client = WebsocketCommunicator(application, path, headers=headers)
        await client.connect()
        close = await client.receive_output(timeout=5)
        assert close == {"type": "websocket.close", "code": 4406, "reason": close["reason"]}, close
        await client.disconnect()
    client = WebsocketCommunicator(application, "/seed/notes/1", headers=[(b"accept", b"application/x-msgpack, */*")])
    await client.connect()
    await client.send_json_to({"dogId": 1, "note": "hi"})
    assert await client.receive_json_from(timeout=5) == {"dogId": 1, "note": "hi"}
    await client.disconnect()
    print("ok")

asyncio.run(main())
"""
    env = {"DJANGO_SETTINGS_MODULE": "tests.settings", "PATH": "/usr/bin:/bin"}
    result = subprocess.run(
        [sys.executable, "-c", script], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120
    )
    assert result.stdout.strip().endswith("ok"), result.stderr[-2000:]


# Binary frames on a socket --------------------------------------------------------------


async def receive_value(client, codec, timeout=2):
    message = await client.receive_raw(timeout=timeout)
    assert message["type"] == "websocket.send" and message.get("text") is None, message
    return codec.loads(message["bytes"])


@pytest.mark.django_db(transaction=True)
async def test_a_msgpack_suffix_on_the_seed_notes_path_gets_msgpack_replies(ws):
    client = await ws("/seed/notes/341.msgpack")
    await client.send_bytes(msgpack.packb({"dogId": 341, "note": "good with kids"}))
    assert await receive_value(client, codecs.MSGPACK) == {"dogId": 341, "note": "good with kids"}
    await client.send({"dogId": 341, "note": "a text frame is still JSON"})
    assert await receive_value(client, codecs.MSGPACK) == {"dogId": 341, "note": "a text frame is still JSON"}


@pytest.mark.django_db(transaction=True)
async def test_accept_cbor_on_a_record_path_gets_cbor_puts_of_the_record_and_its_changes(ws):
    dog = await db(Dog.objects.create)(name="Rex", breed="Collie")
    client = await ws(f"/dog/{dog.pk}", headers=[(b"accept", b"application/cbor")])
    first = await receive_value(client, codecs.CBOR)
    assert (first["type"], first["id"], first["value"]["name"]) == ("put", dog.pk, "Rex")
    dog.name = "Rex II"
    await db(dog.save)()
    change = await receive_value(client, codecs.CBOR)
    assert change["value"] == {"id": dog.pk, "name": "Rex II", "breed": "Collie", "age": 0}
    assert change["version"] > first["version"]
    await db(dog.delete)()
    assert (await receive_value(client, codecs.CBOR))["type"] == "delete"


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("codec", BINARY, ids=lambda c: c.name)
async def test_a_record_frame_in_a_binary_format_holds_the_values_of_its_json_frame(ws, codec):
    made = timezone.make_aware(datetime.datetime(2026, 1, 2, 3, 4, 5, 678000), datetime.timezone.utc)
    gadget = await db(Gadget.objects.create)(
        name="Lamp", price=decimal.Decimal("9.90"), made=made, serial=uuid.uuid4(), specs={"w": 60}, blob=b"\x01"
    )
    as_json = await ws(f"/gadget/{gadget.pk}")
    binary = await ws(f"/gadget/{gadget.pk}{codec.suffix}")
    json_put, binary_put = await as_json.receive(), await receive_value(binary, codec)
    assert binary_put["id"] == str(gadget.pk), "the suffix is not part of the id"
    assert binary_put["value"] == json_put["value"]
    assert binary_put["value"]["price"] == "9.90" and binary_put["value"]["made"] == "2026-01-02T03:04:05.678Z"


@pytest.mark.django_db(transaction=True)
async def test_the_collection_path_takes_the_format_from_accept(ws):
    await db(Dog.objects.create)(name="Ann")
    await db(Dog.objects.create)(name="Bo")
    client = await ws("/dog/", headers=[(b"accept", b"application/vnd.msgpack")])
    names = [(await receive_value(client, codecs.MSGPACK))["value"]["name"] for _ in range(2)]
    assert names == ["Ann", "Bo"]


@pytest.mark.django_db(transaction=True)
async def test_a_collection_route_that_lets_a_suffix_through_speaks_that_format(ws):
    await db(Dog.objects.create)(name="Ann")
    client = await ws("/suffixed-dog/.cbor")
    first = await receive_value(client, codecs.CBOR)
    assert (first["type"], first["value"]["name"]) == ("put", "Ann")
    plain = await ws("/suffixed-dog/")
    assert (await plain.receive())["value"]["name"] == "Ann", "without the suffix: JSON"


@pytest.mark.django_db(transaction=True)
async def test_a_projected_resource_sends_its_own_view_in_msgpack(ws):
    dog = await db(Dog.objects.create)(name="Rex", breed="Collie", age=4)
    client = await ws(f"/labelled-dog/{dog.pk}.msgpack")
    first = await receive_value(client, codecs.MSGPACK)
    assert first["value"] == {"id": dog.pk, "name": "Rex", "breed": "Collie", "label": "Rex the Collie"}
    dog.age = 5
    dog.breed = "Beagle"
    await db(dog.save)()
    assert (await receive_value(client, codecs.MSGPACK))["value"]["label"] == "Rex the Beagle"


@pytest.mark.django_db(transaction=True)
async def test_each_change_is_encoded_once_per_format_however_many_sockets_receive_it(ws, monkeypatch):
    dog = await db(Dog.objects.create)(name="Rex")
    clients = [await ws(f"/dog/{dog.pk}.msgpack") for _ in range(3)]
    for client in clients:
        await receive_value(client, codecs.MSGPACK)
    encoded = []
    dumps = codecs.MSGPACK._dumps_parsed

    def counting(value):
        encoded.append(value)
        return dumps(value)

    monkeypatch.setattr(codecs.MSGPACK, "_dumps_parsed", counting)
    dog.name = "Rex II"
    await db(dog.save)()
    for client in clients:
        assert (await receive_value(client, codecs.MSGPACK))["value"]["name"] == "Rex II"
    assert len(encoded) == 1


@pytest.mark.django_db(transaction=True)
async def test_bad_binary_input_does_not_close_the_socket_and_good_input_still_works(ws):
    dog = await db(Dog.objects.create)(name="Rex")
    client = await ws(f"/status/{dog.pk}.msgpack")
    await client.send_bytes(b"\xc1\xc1 not msgpack")
    await client.send_bytes(msgpack.packb({"dogId": dog.pk, "note": "still here"}))
    while True:
        frame = await receive_value(client, codecs.MSGPACK)
        if frame.get("type") == "message":
            break
    assert frame["value"] == {"dogId": str(dog.pk), "note": "still here"}


def test_a_frame_msgpack_cannot_carry_is_not_sent_and_is_counted():
    from harper_resources import metrics
    from harper_resources.streams import Frame, asgi_message

    before = metrics.snapshot().get("encode_failed", 0)
    frame = Frame(protocol.put_frame(1, {"id": 1, "huge": 2**70}, 1.0), "harper.x.1", 1.0)
    assert asgi_message(frame, codecs.MSGPACK) is None
    assert codecs.CBOR.loads(asgi_message(frame, codecs.CBOR)["bytes"])["value"]["huge"] == 2**70
    assert metrics.snapshot()["encode_failed"] == before + 1
    assert asgi_message(frame, codecs.MSGPACK) is None, "the failure is kept: not encoded again"
    assert metrics.snapshot()["encode_failed"] == before + 1


@pytest.mark.django_db(transaction=True)
async def test_a_missing_library_closes_the_upgrade_with_4406(ws, monkeypatch):
    monkeypatch.setattr(codecs.CBOR, "available", False)
    client = await ws("/dog/1.cbor")
    assert await client.closed_with() == 4406
