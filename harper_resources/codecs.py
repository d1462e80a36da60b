"""Wire formats: JSON, MessagePack and CBOR, and how a client picks one.

A ``Codec`` turns one value (a frame, a value a resource sends, a REST body) into bytes
and back. Every codec carries the same values JSON does: ``datetime``, ``date``,
``time``, ``timedelta``, ``Decimal``, ``UUID`` and lazy strings become the strings
Django's ``DjangoJSONEncoder`` writes, sets become lists, model files their name. Only
``bytes`` differ: MessagePack and CBOR carry them as binary, JSON as base64 text.

Negotiation, for WebSocket upgrades and HTTP requests alike:

- ``from_accept(header)``: the codec an ``Accept`` header asks for (the first type it
  lists that a codec serves), JSON for none or ``*/*``, None when it names only types
  no codec serves (an HTTP view answers 406; the WebSocket upgrade falls back to JSON).
- ``split_suffix(path_or_id)``: a ``.msgpack`` / ``.cbor`` suffix and the text without it.
- ``negotiate(scope, id_kwarg)``: both, for a WebSocket connection (the suffix wins).

MessagePack needs the ``msgpack`` package and CBOR ``cbor2`` (the ``msgpack`` and
``cbor`` extras). Without them the app serves JSON only; asking for a missing one raises
``NotAcceptable`` (a WebSocket closes with 4406; an HTTP view should answer 406).
"""

from __future__ import annotations

import importlib.util
import json
from collections.abc import Callable
from typing import Any

from . import protocol
from .exceptions import NotAcceptable

__all__ = [
    "CBOR",
    "CODECS",
    "JSON",
    "MSGPACK",
    "Codec",
    "by_content_type",
    "from_accept",
    "negotiate",
    "split_suffix",
]

_json_values = protocol.FrameEncoder()


Dump = Callable[[Any], bytes]
Load = Callable[[bytes], Any]


def _jsonable(value: Any) -> Any:
    """``value`` as the JSON wire format carries it (``TypeError`` if it cannot)."""
    return _json_values.default(value)


class Codec:
    """One wire format.

    - ``name``: ``"json"``, ``"msgpack"`` or ``"cbor"``.
    - ``content_type``: the media type to answer with (``Content-Type``).
    - ``binary``: True when WebSocket frames in this format are binary frames.
    - ``suffix``: the path suffix that asks for it (``".msgpack"``), or None.
    - ``library``: the package it needs, or None.
    - ``available``: whether that package is installed.

    ``dumps(value)`` raises ``TypeError`` or ``ValueError`` for a value the format cannot
    carry; ``loads(data)`` raises ``ValueError`` (or the library's own error) for bytes
    that are not one value in this format; both raise ``NotAcceptable`` when the library
    is missing. ``decode_client_frame(data)`` never raises.
    """

    __slots__ = (
        "_dumps",
        "_dumps_parsed",
        "_loads",
        "available",
        "binary",
        "content_type",
        "library",
        "media_types",
        "name",
        "suffix",
    )

    def __init__(
        self,
        name: str,
        content_type: str,
        media_types: tuple[str, ...],
        *,
        binary: bool,
        suffix: str | None,
        library: str | None,
        make: Callable[[], tuple[Dump, Load, Dump]],
    ) -> None:
        self.name = name
        self.content_type = content_type
        self.media_types = media_types
        self.binary = binary
        self.suffix = suffix
        self.library = library
        self.available = library is None or importlib.util.find_spec(library) is not None
        self._dumps: Dump | None = None
        self._loads: Load | None = None
        self._dumps_parsed: Dump | None = None
        if self.available:
            self._dumps, self._loads, self._dumps_parsed = make()

    def require(self) -> Codec:
        """This codec; ``NotAcceptable`` when its library is not installed."""
        if not self.available:
            raise NotAcceptable(f"{self.content_type} is not available on this server")
        return self

    def dumps(self, value: Any) -> bytes:
        """``value`` encoded in this format."""
        if self._dumps is None:
            self.require()
        assert self._dumps is not None
        return self._dumps(value)

    def dumps_parsed(self, value: Any) -> bytes:
        """``dumps`` for a value ``json.loads`` made (only JSON's types), as a ``Frame``'s
        value is: the same bytes, without looking for values to convert."""
        if self._dumps_parsed is None:
            self.require()
        assert self._dumps_parsed is not None
        return self._dumps_parsed(value)

    def loads(self, data: bytes) -> Any:
        """The value ``data`` encodes."""
        if self._loads is None:
            self.require()
        assert self._loads is not None
        return self._loads(data)

    def decode_client_frame(self, data: bytes) -> Any:
        """What a resource receives for a binary client frame in this format: the value
        it encodes, or, when it encodes none, ``{"contentType":
        "application/octet-stream", "data": <bytes>}`` as for any undecodable frame."""
        try:
            return self.loads(data)
        except Exception:
            return {"contentType": protocol.OCTET_STREAM, "data": data}

    def __repr__(self) -> str:
        return f"<Codec {self.name}>"


def _json() -> tuple[Dump, Load, Dump]:
    def dumps(value: Any) -> bytes:
        return protocol.encode(value).encode("utf-8", "surrogatepass")

    return dumps, json.loads, dumps


def _msgpack() -> tuple[Dump, Load, Dump]:
    import msgpack

    def dumps(value: Any) -> bytes:
        data: bytes = msgpack.packb(value, default=_jsonable, use_bin_type=True, datetime=False)
        return data

    def loads(data: bytes) -> Any:
        return msgpack.unpackb(data, raw=False, strict_map_key=True)

    return dumps, loads, dumps


def _cbor() -> tuple[Dump, Load, Dump]:
    import datetime
    import decimal
    import uuid

    import cbor2

    def as_json(encoder: Any, value: Any) -> None:
        encoder.encode(_jsonable(value))

    # cbor2 has tags of its own for these; the JSON wire format has strings (or lists).
    encoders = dict.fromkeys(
        (
            datetime.datetime,
            datetime.date,
            datetime.time,
            datetime.timedelta,
            decimal.Decimal,
            uuid.UUID,
            set,
            frozenset,
        ),
        as_json,
    )

    def refuse(decoder: Any) -> Any:
        raise cbor2.CBORDecodeError("tag not accepted")

    # What a client sends may not build cyclic values (shared references), regular
    # expressions or MIME messages; map keys must be strings or bytes.
    refused = dict.fromkeys((28, 29, 35, 36), refuse)

    def dumps(value: Any) -> bytes:
        data: bytes = cbor2.dumps(value, encoders=encoders, default=as_json)
        return data

    def loads(data: bytes) -> Any:
        return cbor2.loads(data, semantic_decoders=refused, strict_hashable_types=True, max_depth=200)

    def dumps_parsed(value: Any) -> bytes:
        data: bytes = cbor2.dumps(value)
        return data

    return dumps, loads, dumps_parsed


JSON = Codec(
    "json",
    "application/json",
    ("application/json",),
    binary=False,
    suffix=None,
    library=None,
    make=_json,
)
MSGPACK = Codec(
    "msgpack",
    "application/x-msgpack",
    ("application/x-msgpack", "application/msgpack", "application/vnd.msgpack"),
    binary=True,
    suffix=".msgpack",
    library="msgpack",
    make=_msgpack,
)
CBOR = Codec(
    "cbor",
    "application/cbor",
    ("application/cbor",),
    binary=True,
    suffix=".cbor",
    library="cbor2",
    make=_cbor,
)

#: Every codec, by name.
CODECS: dict[str, Codec] = {codec.name: codec for codec in (JSON, MSGPACK, CBOR)}

_BY_MEDIA_TYPE = {media_type: codec for codec in CODECS.values() for media_type in codec.media_types}
_WILDCARDS = ("*/*", "application/*")


def by_content_type(content_type: str | None) -> Codec | None:
    """The codec of a request body's ``Content-Type`` (parameters ignored), or None for
    a type no codec reads. ``NotAcceptable`` if its library is missing."""
    if not content_type:
        return None
    codec = _BY_MEDIA_TYPE.get(content_type.split(";", 1)[0].strip().lower())
    return None if codec is None else codec.require()


def from_accept(accept: str | bytes | None) -> Codec | None:
    """The codec an ``Accept`` header value asks for.

    The first media range (in the header's order; q-values other than ``q=0`` are not
    weighed) that a codec serves picks it; ``*/*`` and ``application/*`` pick JSON, and
    so does an absent or empty header. A type whose library is missing is passed over
    for a later one the header accepts; when none is left, ``NotAcceptable``. None when
    the header names only types no codec serves (``text/html``, ``text/event-stream``).
    """
    if accept is None:
        return JSON
    if isinstance(accept, bytes):
        accept = accept.decode("latin-1")
    if not accept.strip():
        return JSON
    missing: Codec | None = None
    for media_range in accept.split(","):
        media_type, _, params = media_range.partition(";")
        media_type = media_type.strip().lower()
        if media_type in _WILDCARDS:
            codec: Codec | None = JSON
        else:
            codec = _BY_MEDIA_TYPE.get(media_type)
        if codec is None or _refused(params):
            continue
        if codec.available:
            return codec
        missing = missing or codec
    if missing is not None:
        missing.require()
    return None


def _refused(params: str) -> bool:
    """True for media-range parameters holding ``q=0`` (not acceptable at all)."""
    for param in params.split(";"):
        name, _, value = param.partition("=")
        if name.strip().lower() == "q":
            try:
                return float(value) == 0
            except ValueError:
                return False
    return False


def split_suffix(path_or_id: str) -> tuple[Codec | None, str]:
    """``(codec, rest)`` for a text ending in a codec's suffix (``"341.msgpack"`` gives
    ``(MSGPACK, "341")``), else ``(None, path_or_id)``. ``NotAcceptable`` if that
    codec's library is missing."""
    for codec in (MSGPACK, CBOR):
        assert codec.suffix is not None
        if path_or_id.endswith(codec.suffix):
            return codec.require(), path_or_id[: -len(codec.suffix)]
    return None, path_or_id


def _header(scope: dict[str, Any], name: bytes) -> bytes | None:
    for key, value in scope.get("headers") or ():
        if key.lower() == name:
            return bytes(value)
    return None


def negotiate(scope: dict[str, Any], id_kwarg: str | None = None) -> Codec:
    """The codec of a WebSocket connection, from the suffix of its path's last segment
    or else its ``Accept`` header (JSON when neither asks for one it serves).

    When the suffix comes from the path and the route's ``id_kwarg`` ends with it, the
    suffix is taken off that id in ``scope["url_route"]`` (so ``/notes/341.msgpack``,
    routed by ``path("notes/<str:id>", ...)``, has the id ``"341"``). A collection path
    takes a suffix only where its route lets it through (``re_path(r"^dog/(?:\\.msgpack|
    \\.cbor)?$", ...)``); ``Accept`` works everywhere a client can set headers.
    ``NotAcceptable`` (close 4406) when the codec asked for is not installed.
    """
    path = scope.get("path") or ""
    codec, _ = split_suffix(path.rsplit("/", 1)[-1])
    if codec is not None:
        route = scope.get("url_route")
        kwargs = route.get("kwargs") if isinstance(route, dict) else None
        if id_kwarg is not None and isinstance(route, dict) and isinstance(kwargs, dict):
            raw_id = kwargs.get(id_kwarg)
            if isinstance(raw_id, str) and codec.suffix and raw_id.endswith(codec.suffix):
                stripped = raw_id[: -len(codec.suffix)]
                scope["url_route"] = {**route, "kwargs": {**kwargs, id_kwarg: stripped}}
        return codec
    return from_accept(_header(scope, b"accept")) or JSON
