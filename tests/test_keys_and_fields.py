"""Any primary key and any common field type streams correctly."""

from __future__ import annotations

import asyncio
import datetime
import decimal
import time
import uuid

import pytest
from hypothesis import given
from hypothesis import strategies as st

from harper_resources import protocol
from tests.conftest import db
from tests.testapp.models import Gadget, Stamped, Tag

pytestmark = pytest.mark.django_db(transaction=True)


async def test_a_uuid_keyed_record_with_datetime_decimal_uuid_and_json_fields_streams(ws):
    made = datetime.datetime(2026, 5, 1, 12, 30, tzinfo=datetime.timezone.utc)
    serial = uuid.UUID("12345678-1234-5678-1234-567812345678")
    gadget = await db(Gadget.objects.create)(
        name="Widget", price=decimal.Decimal("19.99"), made=made, serial=serial, specs={"w": [1, 2]}, blob=b"\x00\x01"
    )
    client = await ws(f"/gadget/{str(gadget.pk).upper()}")
    frame = await client.receive()
    assert frame["id"] == str(gadget.pk)
    assert frame["value"] == {
        "id": str(gadget.pk),
        "name": "Widget",
        "price": "19.99",
        "made": "2026-05-01T12:30:00Z",
        "serial": str(serial),
        "specs": {"w": [1, 2]},
        "manual": None,
        "blob": "AAE=",
    }
    gadget.price = decimal.Decimal("5.00")
    await db(gadget.save)()
    assert (await client.receive())["value"]["price"] == "5.00"


@pytest.mark.parametrize(
    "key",
    ["plain", "with spaces", "ünïcødé 🐕", "slash/inside", "under_score", "dots.and-dashes", "x" * 250, "h.abc", "_x"],
)
async def test_text_keys_of_every_shape_reach_their_own_subscribers_only(ws, key):
    tag = await db(Tag.objects.create)(name=key, color="red")
    neighbour = await db(Tag.objects.create)(name=key + "2", color="blue")
    client = await ws(f"/tag/{key}")
    assert (await client.receive())["id"] == key
    neighbour.color = "green"
    await db(neighbour.save)()
    tag.color = "black"
    await db(tag.save)()
    frame = await client.receive()
    assert (frame["id"], frame["value"]["color"]) == (key, "black")
    assert await client.nothing()


async def test_a_records_version_is_the_time_of_its_last_committed_change_in_ms(ws):
    before = time.time() * 1000
    record = await db(Stamped.objects.create)(title="first")
    after = time.time() * 1000
    await asyncio.sleep(0.05)
    client = await ws(f"/stamped/{record.pk}")
    frame = await client.receive()
    assert before <= frame["version"] <= after, "the time of the change, not of the read"


GROUP_CHARS = set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_.")


@given(
    table=st.from_regex(r"[a-z_]{1,60}\.[a-z_]{1,60}", fullmatch=True) | st.text(max_size=200),
    key=st.text(max_size=400),
)
def test_group_names_are_valid_for_every_layer_whatever_the_table_and_key(table, key):
    for name in (protocol.table_group(table), protocol.record_group(table, key)):
        assert 0 < len(name) < 100
        assert set(name) <= GROUP_CHARS


@pytest.mark.parametrize(
    "table", ["testapp.hündin", "тесты.собака", "resource.tests.test_x.test_fn.<locals>.room", "dogs.dog:1"]
)
def test_a_table_name_some_layer_refuses_gets_a_valid_group_of_its_own(table):
    names = {protocol.table_group(table), protocol.record_group(table, "1"), protocol.record_group(table, "ü")}
    for name in names:
        assert 0 < len(name) < 100
        assert set(name) <= GROUP_CHARS
    assert len(names) == 3


@pytest.mark.parametrize("hashed_table", ["testapp.hündin", "dogs." + "x" * 200])
def test_a_plain_table_named_like_a_hash_never_takes_the_group_of_a_hashed_one(hashed_table):
    hashed = protocol.table_group(hashed_table)
    assert hashed.startswith("harper._")
    assert protocol.table_group(hashed.removeprefix("harper.")) != hashed


@given(a=st.text(max_size=200), b=st.text(max_size=200))
def test_different_keys_get_different_groups(a, b):
    if a != b:
        assert protocol.record_group("dogs.dog", a) != protocol.record_group("dogs.dog", b)
