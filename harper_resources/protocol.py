"""The wire and channel-layer vocabulary, built in one place.

- Frames sent to clients (Harper-compatible ``put``, ``delete`` and ``message``).
- JSON encoding of frames and of values a resource sends itself.
- Decoding of client frames into messages.
- Group names and the channel-layer event that carries a frame between processes.
"""

from __future__ import annotations

import base64
import hashlib
import json
import math
import re
import time
from typing import Any, NamedTuple
from urllib.parse import parse_qs

from django.core.serializers.json import DjangoJSONEncoder
from django.db.models.fields.files import FieldFile

PUT = "put"
DELETE = "delete"
MESSAGE = "message"
RESET = "reset"

#: ``type`` of the channel-layer message that carries one encoded frame to the hubs.
EVENT_TYPE = "harper.event"

OCTET_STREAM = "application/octet-stream"

_GROUP_PREFIX = "harper"
_MAX_GROUP_LENGTH = 99
# Ids made only of these characters go into group names as they are. Underscore is left
# out on purpose: hashed ids start with "_", so the two forms can never collide.
_PLAIN_ID = re.compile(r"[A-Za-z0-9.\-]+\Z")
# Tables made only of the characters every layer accepts go in as they are, unless they
# start with "_": a hashed table starts with "_", so the two forms never collide either.
_PLAIN_TABLE = re.compile(r"[A-Za-z0-9.\-][A-Za-z0-9._\-]*\Z")


class FrameEncoder(DjangoJSONEncoder):
    """Django's JSON encoder (datetime, Decimal, UUID, Promise) plus the other values a
    model field can hold: files become their name, bytes become base64 text, sets lists."""

    def default(self, o: Any) -> Any:
        if isinstance(o, FieldFile):
            return o.name or None
        if isinstance(o, (bytes, bytearray, memoryview)):
            return base64.b64encode(bytes(o)).decode("ascii")
        if isinstance(o, (set, frozenset)):
            return list(o)
        return super().default(o)


_encoder = FrameEncoder(separators=(",", ":"), ensure_ascii=False)


def encode(value: Any) -> str:
    """JSON text of ``value``; raises ``TypeError`` for values JSON cannot represent."""
    return _encoder.encode(value)


def now_ms() -> float:
    """Milliseconds since the epoch, as Harper's ``localTime`` and ``version`` are."""
    return time.time() * 1000.0


def put_frame(pk: Any, value: dict[str, Any], version: float) -> str:
    """The encoded ``put`` frame of a record's full current ``value``."""
    return encode({"id": pk, "localTime": now_ms(), "value": value, "version": version, "type": PUT})


def delete_frame(pk: Any, version: float) -> str:
    """The encoded ``delete`` frame of a record (no ``value``, as in Harper)."""
    return encode({"id": pk, "localTime": now_ms(), "version": version, "type": DELETE})


def message_frame(pk: Any, payload: Any, version: float) -> str:
    """The encoded ``message`` frame of a publish to a record."""
    return encode({"id": pk, "localTime": now_ms(), "value": payload, "version": version, "type": MESSAGE})


def reset_frame() -> str:
    """The frame that tells a resuming client its ``since`` is older than the change log
    keeps: what follows is the full current state, as without ``since``."""
    return encode({"type": RESET, "version": now_ms()})


class SubscriptionOptions(NamedTuple):
    """What a client asked of the default stream in the URL's query string."""

    #: ``?since=<version>``: only what changed after that version (a resume).
    since: float | None = None
    #: ``?previousCount=N``: the last N changes from the change log, then live.
    previous_count: int | None = None
    #: ``?omitCurrent=true``: no first ``put``/dump, only live changes.
    omit_current: bool = False


#: The options of a URL that asks for none: one shared value (it is immutable).
NO_OPTIONS = SubscriptionOptions()


def subscription_options(query_string: bytes | str) -> SubscriptionOptions:
    """The options in ``query_string``; raises ``ValueError`` naming a bad one."""
    if not query_string:
        return NO_OPTIONS  # most connections: no allocation per connection
    if isinstance(query_string, bytes):
        query_string = query_string.decode("latin-1")
    query = parse_qs(query_string)
    since = previous_count = None
    if "since" in query:
        try:
            since = float(query["since"][-1])
        except ValueError:
            raise ValueError("since must be a version (a number)") from None
        if not math.isfinite(since):
            raise ValueError("since must be a finite number")
    if "previousCount" in query:
        raw = query["previousCount"][-1]
        if not raw.isdigit() or not 0 < int(raw) <= 10_000:
            raise ValueError("previousCount must be a whole number from 1 to 10000")
        previous_count = int(raw)
    omit = query.get("omitCurrent", ["false"])[-1].lower()
    if omit not in ("true", "false", "1", "0", ""):
        raise ValueError("omitCurrent must be true or false")
    return SubscriptionOptions(since, previous_count, omit in ("true", "1"))


def decode_client_frame(text: str | None, data: bytes | None) -> Any:
    """What a resource receives for one client frame on a JSON connection (a MessagePack
    or CBOR connection decodes binary frames with ``Codec.decode_client_frame``).

    Text that parses as JSON arrives as the parsed value. Any other text (including JSON
    nested too deeply to parse) and every binary frame arrive as
    ``{"contentType": "application/octet-stream", "data": <bytes>}``. Never raises.
    """
    if text is not None:
        try:
            return json.loads(text)
        except (ValueError, RecursionError):
            return {"contentType": OCTET_STREAM, "data": text.encode("utf-8", "surrogatepass")}
    return {"contentType": OCTET_STREAM, "data": data if data is not None else b""}


def _fit(name: str) -> str:
    if len(name) <= _MAX_GROUP_LENGTH:
        return name
    return f"{_GROUP_PREFIX}._{hashlib.sha256(name.encode()).hexdigest()}"


def _digest(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()[:40]


def _table_part(table: str) -> str:
    return table if _PLAIN_TABLE.match(table) else f"_{_digest(table)}"


def table_group(table: str) -> str:
    """Group of every change in ``table`` (a model's ``app_label.model_name``, or a plain
    resource's import path).

    A table with characters some layer refuses (non-ASCII, ``<locals>``) or that would
    make the name too long is replaced by a hash, so every layer accepts the name.
    """
    return _fit(f"{_GROUP_PREFIX}.{_table_part(table)}")


def record_group(table: str, key: str) -> str:
    """Group of one record, ``key`` being the canonical text of its primary key.

    Tables as in ``table_group``; keys that are not plain ASCII (spaces, unicode,
    slashes, underscores) or that would make the name too long are replaced by a hash,
    so every layer accepts the name.
    """
    table = _table_part(table)
    if _PLAIN_ID.match(key):
        name = f"{_GROUP_PREFIX}.{table}.{key}"
        if len(name) <= _MAX_GROUP_LENGTH:
            return name
    return _fit(f"{_GROUP_PREFIX}.{table}._{_digest(key)}")


def event(
    group: str, frame: str, record: str | None = None, version: float = 0.0, source: str | None = None
) -> dict[str, Any]:
    """The channel-layer message that carries ``frame`` to the subscribers of ``group``;
    ``record`` and ``version`` identify the state a ``put``/``delete`` frame shows,
    ``source`` the resource class a ``message`` was published through."""
    return {
        "type": EVENT_TYPE,
        "group": group,
        "frame": frame,
        "record": record,
        "version": version,
        "source": source,
    }
