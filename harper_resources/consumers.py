"""``Resource``: the Channels WebSocket consumer a user subclasses.

One instance per connection. ``__call__`` does the plumbing (accept, authorise, read
client frames, write the stream, clean up); ``connect()`` is the user's hook, and the
default ``connect()`` is the record stream of DESIGN.md. What Channels gives an
``AsyncWebsocketConsumer`` (``channel_layer``, ``groups``, layer event handlers,
``send``, ``close``, ``receive``, ``disconnect``, ``as_asgi``) works on it too; record
frames come from the per-process hub, never through a channel of the connection's own.
"""

from __future__ import annotations

import asyncio
import contextvars
import functools
import inspect
import logging
import sys
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from typing import Any, ClassVar

from channels.db import database_sync_to_async
from channels.exceptions import InvalidChannelLayerError, StopConsumer
from channels.generic.websocket import AsyncWebsocketConsumer
from channels.layers import get_channel_layer
from django.contrib.auth import get_permission_codename
from django.db import models, router

from . import (
    broadcast,
    changelog,
    closing,
    codecs,
    eager,
    handover,
    handshake,
    metrics,
    protocol,
    reauth,
    tables,
    versions,
)
from .auth import AUTH_FAILED
from .conf import settings
from .exceptions import BadRequest, CloseConnection, Forbidden, InvalidStream, NotLoggedIn, ResourceNotFound
from .hub import HUB_CHANNEL_PREFIX, Hub, get_hub
from .projection import Projection
from .ratelimit import TokenBucket
from .streams import CLIENT_GONE, Frame, IncomingMessages, RawMessage, Send, Stream, asgi_message

logger = logging.getLogger("harper_resources")

SERVER_ERROR = (1011, "Server error")

#: How far back (ms) a collection subscription looks for records changed or deleted
#: recently, whose older states may still be in flight.
KNOWN_WINDOW = 600_000.0

Receive = Callable[[], Awaitable[dict[str, Any]]]

#: Channels' handlers of client events: a Resource reads client events itself (with its
#: size and rate limits), so a subclass that defines one is refused at class creation.
CLIENT_EVENT_HANDLERS = ("websocket_connect", "websocket_receive", "websocket_disconnect")


class Resource(AsyncWebsocketConsumer):  # type: ignore[misc]
    """A WebSocket resource. Route it with ``path("dog/<str:id>", DogResource.as_asgi())``.

    A Channels ``AsyncWebsocketConsumer``: ``self.channel_layer``, ``await self.send(text_data=...,
    bytes_data=...)``, ``await self.close(code)``, ``receive()`` and ``disconnect()`` work as
    in Channels (see their docstrings for the differences), but ``connect()`` keeps
    Harper's meaning: it returns the outgoing stream, and the resource accepts the socket
    itself once that stream is subscribed. Channels' ``websocket_connect``,
    ``websocket_receive`` and ``websocket_disconnect`` are not used; defining one raises
    ``TypeError``.

    Record frames come from the per-process hub: a connection touches the channel layer
    only if it asks for a channel of its own, by a non-empty ``groups`` or
    ``own_channel = True``. Such a connection gets ``self.channel_name`` (before
    ``connect()`` runs), joins ``groups`` before it is accepted and leaves them when it
    ends, and each layer event sent to it (``group_send(group, {"type": "chat.message",
    ...})``) is dispatched to the method of that name (``chat_message``), as in Channels.
    Any other connection has ``channel_name`` None and costs the layer nothing.

    Class attributes:

    - ``model``: the Django model whose records this resource streams (None for a plain
      resource that only carries what it sends or publishes).
    - ``id_kwarg``: the URL keyword holding the record id (``"id"``).
    - ``subprotocols``: the WebSocket subprotocols this resource speaks; None (the
      default) accepts the first one the client offers (see ``select_subprotocol``).
    - ``fields`` / ``exclude``: the field names a ``put``'s ``value`` holds (None: every
      field of the table's value) and those it leaves out. Fields named like secrets
      (``password``, ``*_token``, ...: ``tables.SECRET_NAME``) are sent only when
      listed in ``fields``. ``serialize(record)`` reshapes the result.

    - ``groups``: channel layer groups each connection joins (Channels' meaning; a
      non-empty list gives the connection a channel of its own).
    - ``own_channel``: True gives each connection a channel of its own even without
      ``groups`` (to ``group_add`` in ``connect()`` or receive ``channel_layer.send``).
    - ``channel_layer_alias``: the layer of ``self.channel_layer`` (``"default"``).

    Per connection: ``self.scope``, ``self.user``, ``self.id`` (the id text from the URL,
    None on a collection path), ``self.pk`` (that id as the model's primary key),
    ``self.subprotocol`` (the subprotocol accepted, or None), ``self.codec`` (the
    wire format, ``codecs.JSON`` unless the client asked for MessagePack or CBOR with a
    ``.msgpack``/``.cbor`` path suffix or ``Accept``: then every frame is binary),
    ``self.channel_layer`` and ``self.channel_name`` (None unless the connection has a
    channel of its own).
    """

    model: ClassVar[type[models.Model] | None] = None
    #: How changes are found: ``"signals"`` (``save()``/``delete()`` through the ORM) or
    #: ``"database"`` (PostgreSQL triggers: also ``QuerySet.update()``, bulk operations
    #: and raw SQL from any client; elsewhere the same as ``"signals"``).
    capture: ClassVar[str] = "signals"
    id_kwarg: ClassVar[str] = "id"
    subprotocols: ClassVar[Sequence[str] | None] = None
    #: Other resource classes whose published messages this resource's default stream
    #: passes on. By default a stream takes messages published through its own class
    #: (``await self.publish()``, ``publish(ThisResource, ...)``) and with the model
    #: (``publish(Model, ...)``), never those of another resource of the same model.
    accepts_messages_from: ClassVar[Sequence[type[Resource]]] = ()
    fields: ClassVar[Sequence[str] | None] = None
    exclude: ClassVar[Sequence[str]] = ()
    groups: Sequence[str] | None = ()
    own_channel: ClassVar[bool] = False
    # Class-level defaults: a connection without a channel of its own never sets them.
    channel_name: str | None = None
    _channel_layer: Any = None
    _joined: Sequence[str] = ()
    _early: list[dict[str, Any]] | None = None
    _accept_headers: list[Any] | None = None
    _close_sent = False
    #: Set by ``close()`` or a revocation: the code the connection closes with.
    _close_request: tuple[int, str] | None = None
    _left_with = 1005

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        for name in CLIENT_EVENT_HANDLERS:
            if name in cls.__dict__:
                raise TypeError(
                    f"{cls.__qualname__}.{name}: a Resource reads client events itself; use "
                    "connect(incoming_messages), receive(text_data, bytes_data) or disconnect(code)"
                )
        model = getattr(cls, "model", None)
        if isinstance(model, type) and issubclass(model, models.Model) and not model._meta.abstract:
            tables.register(model, capture=cls.capture, fields=cls.fields)

    def __init__(self, **initkwargs: Any) -> None:
        for name, value in initkwargs.items():
            setattr(self, name, value)
        # Imported here: this module loads before django.setup() in an asgi.py.
        from django.contrib.auth.models import AnonymousUser

        self.scope: dict[str, Any] = {}
        self.user: Any = AnonymousUser()
        self.id: str | None = None
        self.pk: Any = None
        self.options = protocol.NO_OPTIONS
        self.subprotocol: str | None = None
        self.codec: codecs.Codec = codecs.JSON
        self._streams: list[Stream] = []
        self._outgoing: AsyncIterator[Any] | None = None
        self._writer: asyncio.Future[None] | None = None

    #: The writer task's Context, which eager sends enter too (None: no eager sends).
    _writer_context: contextvars.Context | None = None

    @classmethod
    def as_asgi(cls, **initkwargs: Any) -> Any:
        """Channels' ``as_asgi``: an ASGI app that makes a new instance per connection
        (``initkwargs`` set as attributes by ``__init__``). It returns the instance's
        coroutine instead of awaiting it in one of its own, so an open socket keeps no
        frame of it; it is marked as a coroutine function for servers that check."""

        @handover.hands_over
        def app(scope: Any, receive: Receive, send: Send) -> Awaitable[None]:
            return cls(**initkwargs)(scope, receive, send)

        app.consumer_class = cls  # type: ignore[attr-defined]
        app.consumer_initkwargs = initkwargs  # type: ignore[attr-defined]
        functools.update_wrapper(app, cls, updated=())
        return app

    @property
    def channel_layer(self) -> Any:
        """The channel layer of ``channel_layer_alias`` (None if ``CHANNEL_LAYERS`` has
        none), as in Channels; looked up when read, so a connection that never uses it
        keeps no reference to it."""
        if self._channel_layer is not None:
            return self._channel_layer
        return get_channel_layer(self.channel_layer_alias)

    @channel_layer.setter
    def channel_layer(self, layer: Any) -> None:
        self._channel_layer = layer

    @property
    def base_send(self) -> Send:
        """The server's ASGI ``send`` (Channels' name for it)."""
        return self._asgi_send

    @classmethod
    def table_name(cls) -> str:
        """The name this resource's groups are built on: the model's
        ``app_label.model_name``, or for a plain resource its import path."""
        if cls.model is not None:
            return tables.table_name(cls.model)
        return f"resource.{cls.__module__}.{cls.__qualname__}".lower()

    @classmethod
    def message_source(cls) -> str:
        """The identity a message published through this class carries: its import path."""
        return f"{cls.__module__}.{cls.__qualname__}"

    # Hooks a subclass may override -----------------------------------------------------

    def allow_read(self, user: Any) -> bool:
        """May ``user`` subscribe? def or async def. An async def runs on the event loop; a
        def runs in a thread and may use the database, except one whose body is only
        ``return <constant>`` (``return True``), which is called directly: a public
        resource's handshake costs no thread hop. Default: the model's ``view``
        permission for model resources, any authenticated user for plain ones.
        Override to return True for public read.
        A refusal closes with 3000 (not logged in) or 3003 (logged in, not allowed)."""
        if self.model is None:
            return bool(user.is_authenticated)
        opts = self.model._meta
        return bool(user.has_perm(f"{opts.app_label}.{get_permission_codename('view', opts)}"))

    def allow_create(self, user: Any) -> bool:
        """May ``user`` create records here with ``POST`` (REST)? def or async def; a sync
        one runs in a thread and may use the database. Default: the model's ``add``
        permission. A refusal answers 401 (not logged in) or 403 (logged in)."""
        return self._has_model_perm(user, "add")

    def allow_update(self, user: Any, record: models.Model) -> bool:
        """May ``user`` change ``record`` (the stored instance, before the change) with
        ``PUT``/``PATCH`` (REST)? def or async def. Default: the model's ``change``
        permission."""
        return self._has_model_perm(user, "change")

    def allow_delete(self, user: Any, record: models.Model) -> bool:
        """May ``user`` delete ``record`` (the stored instance) with ``DELETE`` (REST)?
        def or async def. Default: the model's ``delete`` permission."""
        return self._has_model_perm(user, "delete")

    def _has_model_perm(self, user: Any, action: str) -> bool:
        if self.model is None:
            return False
        opts = self.model._meta
        return bool(user.has_perm(f"{opts.app_label}.{get_permission_codename(action, opts)}"))

    def select_subprotocol(self, offered: list[str]) -> str | None:
        """The subprotocol to accept, from those the client offered (in its order of
        preference), or None for none. Default: the first offered one ``subprotocols``
        lists, or simply the first offered when ``subprotocols`` is None. A browser that
        offered subprotocols fails a connection that accepts none."""
        if self.subprotocols is None:
            return offered[0] if offered else None
        return next((name for name in offered if name in self.subprotocols), None)

    def get_queryset(self) -> models.QuerySet[Any]:
        """The records the first frames are read from (runs in a thread, may use
        ``self.user``). Narrow it together with ``allow_record`` to hide records."""
        assert self.model is not None
        return self.model._default_manager.all()

    def allow_record(self, record: dict[str, Any]) -> bool:
        """May this connection see ``record`` (the ``value`` of a ``put``: field name to
        JSON value)? Checked for every first frame and every change, on the event loop,
        so it must not touch the database. Default: every record.

        When a change makes a record invisible, the connection gets a ``delete`` for it;
        ``delete`` and ``message`` frames reach it only for records it was shown.
        """
        return True

    def serialize(self, record: dict[str, Any]) -> dict[str, Any]:
        """The ``value`` to send for ``record`` (field name to JSON value, after
        ``fields``/``exclude``). Default: ``record`` as it is. Override to add computed
        keys or rename fields; it must not touch the database, and it runs once per
        change per resource class (the result is shared by every connection of this
        class), so it must depend on ``record`` only, never on the connection."""
        return record

    def connect(self, incoming_messages: IncomingMessages | None = None) -> Any:
        """The connection's outgoing stream. Default: the record stream (see the README).

        Returns a ``Stream`` at once (no await needed): ``send()`` on it, ``on("close")``,
        and iterate it. Override to take control: an async generator, or a def/async def
        returning any async iterable (usually ``super().connect(incoming_messages)``).

        The URL's query string may ask for less or more than the current state:
        ``?since=<version>`` (a resume), ``?previousCount=N`` and ``?omitCurrent=true``;
        a bad value raises ``BadRequest`` (close 4400).
        """
        try:
            self.options = protocol.subscription_options(self.scope.get("query_string", b""))
        except ValueError as exc:
            raise BadRequest(str(exc)[:120]) from None
        stream = Stream(maxsize=settings.SEND_QUEUE_SIZE, max_bytes=settings.SEND_QUEUE_BYTES)
        self._streams.append(stream)
        stream._hold()
        stream._subscribed = asyncio.get_running_loop().create_future()
        stream.create_task(self._subscribe(stream))
        return stream

    async def publish(self, message: Any, id: Any = None) -> None:
        """Send ``message`` as a ``message`` frame to every subscriber of this record (or
        of record ``id``), in every process. The record is not changed."""
        groups, frame = broadcast.message_event(type(self), self.id if id is None else id, message)
        broadcast.submit(groups, frame)

    # Channels' consumer API ------------------------------------------------------------

    async def send(self, text_data: str | None = None, bytes_data: bytes | None = None, close: Any = False) -> None:
        """Send one text or binary frame to this client only, as Channels does (then
        ``close(close)`` if ``close`` is truthy). Raises ``ValueError`` without data.

        With the default stream (``connect()`` returned ``super().connect()``) the frame
        is queued on it: it goes out in order with the record frames, after the first
        ones, and counts against the stream's bounds. With a stream of your own it is
        written at once. Sent before the socket is accepted, it goes out right after the
        accept; once the connection is closing or closed, it is dropped.
        """
        if text_data is not None:
            message: dict[str, Any] = {"type": "websocket.send", "text": text_data}
        elif bytes_data is not None:
            message = {"type": "websocket.send", "bytes": bytes_data}
        else:
            raise ValueError("You must pass one of bytes_data or text_data")
        await self._send_message(message)
        if close:
            await self.close(close)

    async def close(self, code: int | bool | None = None, reason: str | None = None) -> None:
        """Close the socket with ``code`` (1000 when None or True) and ``reason``; where
        the server cannot send a 10xx code (daphne) the client gets 40xx instead
        (``closing.fallback``). Frames queued on the default stream go out first; nothing
        is written after. Returns once the close frame is sent, or at once if the
        connection is closing already. Called before the socket is accepted (in
        ``connect()``), the connection is refused with that code; called from the
        connection's own async generator, the generator is cancelled there."""
        if self._close_sent or self._close_request is not None:
            return
        code = 1000 if code is None or code is True else int(code)
        reason = reason or ""
        self._close_request = (code, reason)
        writer = self._writer
        if writer is None or writer.done():
            return  # not accepted yet: ``_connect`` refuses with it
        outgoing = self._outgoing
        if isinstance(outgoing, Stream) and not outgoing.closed:
            outgoing.close(code, reason)
        else:
            writer.cancel()
        if writer is asyncio.current_task():
            await asyncio.sleep(0)  # the cancellation lands here
        else:
            await asyncio.wait([writer])

    async def accept(self, subprotocol: str | None = None, headers: Any = None) -> None:
        """The resource accepts the socket itself, once its stream is subscribed. Called
        before that (in ``connect()``), this sets the subprotocol and headers of that
        accept; afterwards it does nothing."""
        if self._writer is None and not self._close_sent:
            if subprotocol is not None:
                self.subprotocol = subprotocol
            if headers:
                self._accept_headers = list(headers)

    async def receive(self, text_data: str | None = None, bytes_data: bytes | None = None) -> None:
        """Called with each client frame (as Channels does), after ``incoming_messages``
        got it and in the order they arrive; the next frame is read once it returns.
        Default: nothing. An exception closes with 1011 (logged); ``StopConsumer``
        closes with 1000."""

    async def disconnect(self, code: int) -> None:
        """Called once when an accepted connection has ended, with the close code the
        server reported (or the one the resource sent when it stopped reading). Not
        called for a refused connection, nor when the server cancels the connection's
        task. Default: nothing; an exception is logged."""

    # The default stream ----------------------------------------------------------------

    async def _subscribe(self, stream: Stream) -> None:
        table = self.table_name()
        if self.id is None:
            group = protocol.table_group(table)
        else:
            group = protocol.record_group(table, tables.key(self.pk))
        # Interned: the subscribers of one record share one string of its name.
        group = sys.intern(group)
        stream._filter = self._stream_filter()
        hub = get_hub()
        listener = _Listener(stream.send, _accepted_sources(type(self)), hub, group)
        stream._add_cleanup(listener.leave)
        try:
            await hub.subscribe(group, listener)
        except Exception:
            logger.exception("harper_resources: could not subscribe %s", self.scope.get("path"))
            stream._mark_subscribed(False)
            stream.close(*SERVER_ERROR)
            return
        stream._mark_subscribed(True)
        try:
            # Read after subscribing, so no change falls between the two; live frames
            # wait (held) and go out after these, minus states these already show.
            first, known = ([], []) if self.model is None else await _first_read_in_thread(self)
        except Exception:
            logger.exception("harper_resources: could not read the first frames of %s", self.scope.get("path"))
            stream.close(*SERVER_ERROR)
            return
        hub.note_versions(group, [*known, *first])
        stream._release(first)

    def _first_read(self) -> tuple[list[Frame], list[Frame]]:
        """The first frames, and the stored versions of the records they cover (deleted
        ones included, for the collection those of the last ``KNOWN_WINDOW`` ms), as
        frames that carry only a record and a version: a state older than those,
        arriving later, is stale whatever the first frames showed."""
        if self.id is not None and self.options == protocol.NO_OPTIONS and self._reads_by_key():
            return self._first_read_of_record()
        queryset = self.get_queryset()
        using = queryset.db
        table = self.table_name()
        key = None if self.id is None else tables.key(self.pk)
        with versions.snapshot(using):
            first = self._first_frames(queryset)
            recent = versions.recent(using, table, key, protocol.now_ms() - KNOWN_WINDOW)
        known = [Frame("", protocol.record_group(table, k), version) for k, version in recent.items()]
        return first, known

    def _reads_by_key(self) -> bool:
        """True if this resource's record is its default manager's row by key (no
        ``get_queryset`` of its own), so ``_first_read_of_record`` may read it."""
        return type(self).get_queryset is Resource.get_queryset

    def _first_read_of_record(self) -> tuple[list[Frame], list[Frame]]:
        """``_first_read`` of one record without options, in two plain reads and no
        transaction: its stored version first, then its row. A change committed between
        the two shows in the row but not in the version read, so the first frame may
        carry an older version than the state it shows; that change's own frame then
        arrives too (its version is newer), and the client ends on the stored state.
        Read the other way round, a state could carry a version newer than itself and
        the frame of the newer state would be dropped as stale."""
        model = type(self).model
        assert model is not None
        table = self.table_name()
        key = tables.key(self.pk)
        group = protocol.record_group(table, key)
        version = versions.of(router.db_for_read(model), table, key)
        record = tables.read_default(model, self.pk)
        known = [] if version is None else [Frame("", group, version)]
        if record is None:
            return [], known
        stored = 0.0 if version is None else version
        return [Frame(tables.put_frame(record, stored), group, stored)], known

    def _first_frames(self, queryset: models.QuerySet[Any]) -> list[Frame]:
        """What the stream sends before live changes, as the subscription options ask
        (called inside ``_first_read``'s consistent view):

        - by default the ``put`` of the record (or of the collection's first records);
        - ``since``: per record changed after it, its newest change from the log (none if
          nothing changed); if the log no longer reaches back that far, a ``reset``
          frame and then the default;
        - ``previousCount``: the record's (or table's) last changes from the log, the
          newest being the current state (the default if the log has none);
        - ``omitCurrent``: nothing.
        """
        options = self.options
        table = self.table_name()
        record = None if self.id is None else protocol.record_group(table, tables.key(self.pk))
        using = queryset.db
        if options.since is not None:
            if options.since >= changelog.horizon(using):
                return self._logged(changelog.latest_since(using, table, record, options.since))
            return [Frame(protocol.reset_frame()), *self._current_frames(queryset)]
        if options.previous_count is not None:
            logged = self._logged(changelog.previous(using, table, record, options.previous_count))
            return logged or self._current_frames(queryset)
        if options.omit_current:
            return []
        return self._current_frames(queryset)

    @staticmethod
    def _logged(entries: list[changelog.Entry]) -> list[Frame]:
        return [Frame(entry.frame, entry.record, entry.version) for entry in entries]

    def _current_frames(self, queryset: models.QuerySet[Any]) -> list[Frame]:
        """The ``put`` of the record (or of the collection's first records of
        ``queryset``), each with the stored version of the state it shows (read inside
        ``_first_read``'s one consistent view)."""
        using = queryset.db
        table = self.table_name()
        if self.id is not None:
            if type(self).get_queryset is Resource.get_queryset:  # the default manager's records
                record = tables.read_default(queryset.model, self.pk)
                records = [] if record is None else [record]
            else:
                records = list(queryset.filter(pk=self.pk)[:1])
        else:
            records = list(queryset.order_by("pk")[: settings.COLLECTION_LIMIT])
        keys = [tables.key(record.pk) for record in records]
        stored = versions.stored(using, table, keys)
        frames = []
        for record, key in zip(records, keys, strict=True):
            version = stored.get(key, 0.0)
            frames.append(Frame(tables.put_frame(record, version), protocol.record_group(table, key), version))
        return frames

    def _projection(self) -> Projection | None:
        """This resource's ``fields``/``exclude``/``serialize``, or None when it sends
        the table's value as it is (no field of the model looks like a secret)."""
        cls = type(self)
        model = cls.model
        if model is None:
            return None
        custom = cls.serialize is not Resource.serialize
        if cls.fields is None and not cls.exclude and not custom and not tables.secret_fields(model):
            return None
        return Projection(cls, model, cls.fields, cls.exclude, self.serialize if custom else None)

    def _stream_filter(self) -> Callable[[Frame], Frame | None] | None:
        """The filter of the default stream: ``allow_record`` (on the table's value),
        then this resource's projection; None when neither applies."""
        projection = self._projection()
        if type(self).allow_record is Resource.allow_record:
            return projection
        allowed = self._record_filter()
        if projection is None:
            return allowed

        def admit(frame: Frame) -> Frame | None:
            shown = allowed(frame)
            return None if shown is None else projection(shown)

        return admit

    def _allows(self, record: dict[str, Any]) -> bool:
        try:
            return bool(self.allow_record(record))
        except Exception:
            logger.exception("harper_resources: %s.allow_record failed; record hidden", type(self).__name__)
            return False

    def _record_filter(self) -> Callable[[Frame], Frame | None]:
        """The stream filter that passes only the frames ``allow_record`` lets this
        connection see, turning a ``put`` that hides a shown record into a ``delete``."""
        visible: set[Any] = set()

        def admit(frame: Frame) -> Frame | None:
            kind, pk = frame["type"], frame["id"]
            if kind == protocol.PUT:
                if self._allows(frame["value"]):
                    visible.add(pk)
                    return frame
                if pk in visible:
                    visible.discard(pk)
                    return Frame(protocol.delete_frame(pk, frame.version), frame.record, frame.version)
                return None
            if pk in visible:
                if kind == protocol.DELETE:
                    visible.discard(pk)
                return frame
            return None

        return admit

    # ASGI plumbing ---------------------------------------------------------------------

    async def __call__(self, scope: Any, receive: Receive, send: Send) -> None:
        # ResourceAuthMiddleware's login, handed over (no frame of its own); over HTTP
        # REST does it, a write in the same thread hop as the write.
        login = scope.pop(handshake.PENDING_LOGIN, None)
        self.scope = scope
        kind = scope["type"]
        if kind == "http":  # REST and event streams on the same path
            from . import http

            await http.serve(self, scope, receive, send, login)
            return
        if login is not None:
            await login(scope)
            login = None  # not kept for the socket's life
        if kind != "websocket":
            raise ValueError(f"{type(self).__name__} handles WebSocket and HTTP connections only")
        if (await receive())["type"] != "websocket.connect":
            return
        self._asgi_send = send
        incoming = IncomingMessages(maxsize=settings.RECEIVE_QUEUE_SIZE, max_bytes=8 * settings.MAX_MESSAGE_BYTES)
        # Set up, accept, read, end: in this one frame, the steps' own frames gone once
        # they return, so an idle socket keeps two suspended frames (this and ``_read``).
        try:
            outgoing = await self._connect(incoming)
            if outgoing is None:  # refused
                return
            # Accepted only now: once a client sees the socket open, every change
            # committed after that reaches it.
            await self._accept()
            if self.user.is_authenticated:
                # Checked again every REAUTH_INTERVAL: losing access closes the socket.
                reauth.watch(self)
            try:
                writer, listener = await self._start(incoming, outgoing)
                close = None
                try:
                    # Let the stream start first, so a generator that iterates
                    # incoming_messages at once is iterating before the first client
                    # message is read.
                    await asyncio.sleep(0)
                    close = await self._read(receive, incoming)
                finally:
                    await self._stop(writer, listener, outgoing, incoming)
                if close is not None:
                    self._left_with = close[0]
                    await self._close(*close)
            finally:
                reauth.unwatch(self)
            if type(self).disconnect is not AsyncWebsocketConsumer.disconnect:
                try:
                    await self.disconnect(self._left_with)
                except Exception:
                    logger.exception("harper_resources: %s.disconnect() failed", type(self).__name__)
        finally:
            # Also when the task is cancelled at any await (daphne cancels the task of a
            # client gone for 10 s, and every task at shutdown): the CancelledError goes on.
            self._finish(incoming)
            if self._joined:
                await self._leave_groups()

    async def _connect(self, incoming: IncomingMessages) -> AsyncIterator[Any] | None:
        """Authorise, join groups, open the outgoing stream: that stream, or None when
        the connection was refused (the refusal sent)."""
        try:
            self.subprotocol = self.select_subprotocol(list(self.scope.get("subprotocols") or ()))
            # Before the id is read: a .msgpack/.cbor suffix comes off it.
            self.codec = incoming.codec = codecs.negotiate(self.scope, self.id_kwarg)
            await self._authorise()
            if self.groups or self.own_channel:
                await self._join()
            outgoing = self._outgoing = await self._open(incoming)
            await self._subscriptions_ready()
            if self._close_request is not None:  # close() called in connect()
                raise CloseConnection(*self._close_request)
        except CloseConnection as exc:
            await self._refuse(exc.code, exc.reason)
            return None
        except Exception:
            name = type(self).__name__
            metrics.throttled_error(
                f"connect_failed.{name}", "harper_resources: connect() of %s failed", name, exc_info=True
            )
            await self._refuse(*SERVER_ERROR)
            return None
        return outgoing

    def _revoke(self, code: int, reason: str) -> None:
        """Close this connection because its user lost access (``reauth``): nothing more
        is written, and the close frame is ``code``."""
        if self._close_request is not None:
            return
        self._close_request = (code, reason)
        closing.log_revocation(self.scope, self.user, code)
        if self._writer is not None:
            self._writer.cancel()

    async def _join(self) -> None:
        """Give this connection a channel of its own and join ``groups`` (Channels'
        ``websocket_connect``). Raises if the layer is missing or fails."""
        layer = self._channel_layer = self.channel_layer  # the same layer until the end
        if layer is None:
            raise InvalidChannelLayerError(
                f"{type(self).__name__} has groups or own_channel but CHANNEL_LAYERS has no "
                f"{self.channel_layer_alias!r} layer"
            )
        # The hub's prefix: channels_redis' core layer has one receiver per process at a
        # time, reading the channels of one prefix only; with another prefix than the
        # hub's, events would wait for its reads to time out (seconds).
        self.channel_name = await layer.new_channel(prefix=HUB_CHANNEL_PREFIX)
        self._joined = list(self.groups or ())  # before group_add: a partial join is left too
        for group in self._joined:
            await layer.group_add(group, self.channel_name)

    async def _leave_groups(self) -> None:
        """Leave the groups ``_join`` joined, to the end even if this task is cancelled
        again meanwhile (a failure is logged)."""
        layer, channel, groups = self.channel_layer, self.channel_name, self._joined
        self._joined = ()

        async def leave() -> None:
            for group in groups:
                try:
                    await layer.group_discard(group, channel)
                except Exception:
                    logger.exception("harper_resources: could not leave group %s", group)

        await asyncio.shield(asyncio.ensure_future(leave()))

    async def _listen(self) -> None:
        """Dispatch the events the layer sends to this connection's channel to their
        handler methods (Channels' ``dispatch``), one at a time, until the connection
        ends. A failing handler (or an event without one) closes with 1011, logged."""
        layer, channel = self.channel_layer, self.channel_name
        try:
            while True:
                await self.dispatch(await layer.receive(channel))
        except StopConsumer:
            await self.close()
        except Exception:
            logger.exception("harper_resources: a channel layer event of %s failed", type(self).__name__)
            await self.close(*SERVER_ERROR)

    async def _send_message(self, message: dict[str, Any]) -> None:
        """``send()``'s delivery: on the default stream, else right after the accept, else
        at once; dropped once the connection is closing."""
        if self._close_sent or self._close_request is not None:
            return
        outgoing = self._outgoing
        if isinstance(outgoing, Stream):
            outgoing.send(RawMessage(message))
        elif self._writer is None:
            if self._early is None:
                self._early = []
            self._early.append(message)
        else:
            try:
                await self._asgi_send(message)
            except CLIENT_GONE:  # the client is gone
                metrics.count("client_gone")

    async def _refuse(self, code: int, reason: str) -> None:
        closing.log_refusal(self.scope, self.user, code)
        # Accept, then close: a browser sees the close code only on an open socket.
        await self._accept()
        await self._close(code, reason)

    async def _accept(self) -> None:
        # With the subprotocol selected: a browser that offered some fails without one.
        await self._asgi_send(
            {"type": "websocket.accept", "subprotocol": self.subprotocol, "headers": self._accept_headers or []}
        )

    async def _subscriptions_ready(self) -> None:
        """Wait until the streams ``connect()`` opened are subscribed (raises if one failed)."""
        for stream in self._streams:
            if stream._subscribed is not None:
                ok = await stream._subscribed
                stream._subscribed = None  # resolved: an idle connection keeps no future
                if not ok:
                    raise RuntimeError("the record stream could not subscribe")

    async def _authorise(self) -> None:
        from django.contrib.auth.models import AnonymousUser

        user = self.scope.get("user")
        self.user = user if user is not None else AnonymousUser()
        if self.scope.get(AUTH_FAILED):
            raise NotLoggedIn()
        raw_id = self.scope.get("url_route", {}).get("kwargs", {}).get(self.id_kwarg)
        self.id = None if raw_id is None else str(raw_id)
        if self.model is not None and self.id is not None:
            try:
                self.pk = tables.parse_pk(self.model, self.id)
            except ValueError:
                raise ResourceNotFound() from None
        else:
            self.pk = self.id
        if not await handshake.allow(self.allow_read, self.user):
            raise Forbidden() if self.user.is_authenticated else NotLoggedIn()

    async def _open(self, incoming: IncomingMessages) -> AsyncIterator[Any]:
        result = self.connect(incoming)
        if inspect.isawaitable(result) and not hasattr(result, "__aiter__"):
            result = await result
        if not hasattr(result, "__aiter__"):
            hint = " (connect() returns the outgoing stream, e.g. super().connect(incoming_messages))"
            raise InvalidStream(
                f"{type(self).__name__}.connect() returned {type(result).__name__}, not an async iterable"
                + (hint if result is None else "")
            )
        iterator: AsyncIterator[Any] = result.__aiter__()
        return iterator

    async def _start(
        self, incoming: IncomingMessages, outgoing: AsyncIterator[Any]
    ) -> tuple[asyncio.Task[None], asyncio.Future[None] | None]:
        """After the accept: send what ``send()`` queued in ``connect()``, start the
        writer task (which writes the stream and, when it ends first, sends the close
        frame) and the channel layer's listener. Client frames are read by the caller
        (``_read``) until the server reports the disconnect."""
        if incoming.keep_unread is None:
            # A stream (the default one) takes client frames through on("data") or an
            # iteration already started; anything else reads them by iterating, later.
            incoming.keep_unread = not isinstance(outgoing, Stream)
        if self._early is not None:  # send() in connect(), before the stream existed
            early, self._early = self._early, None
            for message in early:
                try:
                    await self._asgi_send(message)
                except CLIENT_GONE:
                    break
        # The writer runs in a Context of its own that eager sends (``eager``) enter too.
        loop = asyncio.get_running_loop()
        if eager.SUPPORTED:
            context = self._writer_context = contextvars.copy_context()
            writer = loop.create_task(self._write_then_close(outgoing), context=context)  # type: ignore[call-arg]  # novermin
        else:
            writer = loop.create_task(self._write_then_close(outgoing))
        self._writer = writer
        listener = None if self.channel_name is None else asyncio.ensure_future(self._listen())
        for stream in self._streams:
            # A stream closed with abort (a client too slow to read) stops the writer at
            # once, even in the middle of a send the client does not take.
            stream._on_abort = writer
        return writer, listener

    async def _stop(
        self,
        writer: asyncio.Task[None],
        listener: asyncio.Future[None] | None,
        outgoing: AsyncIterator[Any],
        incoming: IncomingMessages,
    ) -> None:
        """Once reading ended: stop the writer and the listener, close the stream."""
        writer.cancel()
        if listener is None:
            await asyncio.gather(writer, return_exceptions=True)
        else:
            listener.cancel()
            await asyncio.gather(writer, listener, return_exceptions=True)
        await self._aclose(outgoing)
        self._finish(incoming)

    async def _write_then_close(self, outgoing: AsyncIterator[Any]) -> None:
        """The writer task: write ``outgoing`` to the client, then send the close frame
        (unless the client left first). The default stream is written in this frame
        itself, not in one more: an idle socket keeps one frame waiting here."""
        error: BaseException | None = None
        try:
            if self._close_request is not None:
                pass
            elif isinstance(outgoing, Stream):
                # Every send runs here, in this connection's task and context (server or
                # middleware code around ``send`` may use timeouts, task groups and
                # contextvars); one wake-up writes every frame that arrived meanwhile.
                # While this task waits, the hub writes a frame at once as this task
                # (``eager``).
                send, codec = self._asgi_send, self.codec
                direct = None
                context = self._writer_context
                if context is not None and settings.EAGER_SEND:
                    task = asyncio.current_task()
                    assert task is not None
                    direct = eager.DirectSend(outgoing, send, codec, task, context)
                gone: BaseException | None = None
                while gone is None:
                    try:
                        if outgoing._resume is not None:  # an eager send that suspended
                            rest, outgoing._resume = outgoing._resume, None
                            await rest
                        if outgoing._direct_error is not None:  # an eager send that raised
                            raised, outgoing._direct_error = outgoing._direct_error, None
                            raise raised
                    except CLIENT_GONE as exc:
                        gone = exc
                        break
                    batch = outgoing._take_all()
                    if batch:
                        for item in batch:
                            message = asgi_message(item, codec)
                            if message is not None:
                                try:
                                    await send(message)
                                except CLIENT_GONE as exc:  # the client is gone
                                    gone = exc
                                    break
                        # Dropped before waiting: an idle connection keeps no frame it sent.
                        batch = item = message = None
                    elif outgoing.closed:
                        break
                    else:
                        outgoing._direct = direct
                        try:
                            await outgoing._wait()
                        except asyncio.CancelledError as exc:
                            outgoing._direct = None
                            if outgoing._resume is None:
                                raise
                            # Cancelled (a timeout inside an eager send, say) before it
                            # got to the send that suspended: the send gets the
                            # cancellation.
                            outgoing._resume = eager.thrown(outgoing._resume, exc)
                            continue
                        outgoing._direct = None
                if gone is not None:
                    outgoing._send_failed(gone)
            else:
                await self._write_iterated(outgoing)
        except asyncio.CancelledError:
            if self._close_request is None and not any(stream._aborted for stream in self._streams):
                raise  # the client left: nobody to close for
        except Exception as exc:
            error = exc
        await self._close(*self._writer_close(error))

    async def _read(self, receive: Receive, incoming: IncomingMessages) -> tuple[int, str] | None:
        """Feed client frames to ``incoming``. Returns None when the client leaves, or the
        close code and reason for a frame this connection refuses: 1009 for one over
        ``MAX_MESSAGE_BYTES``, 1008 for one over the ``MESSAGE_RATE``/``MESSAGE_BURST``
        token bucket or one too many unread."""
        limit = settings.MAX_MESSAGE_BYTES
        bucket: TokenBucket | None = None  # made at the first message: most clients send none
        hooked = type(self).receive is not AsyncWebsocketConsumer.receive
        while True:
            message: Any = await receive()
            kind = message["type"]
            if kind == "websocket.disconnect":
                self._left_with = message.get("code", 1005)
                return None
            if kind != "websocket.receive":
                continue
            text, data = message.get("text"), message.get("bytes")
            if text is not None:
                # A character takes 1 to 4 bytes in UTF-8: only long texts need encoding.
                size = len(text)
                if size * 4 > limit:
                    size = len(text.encode("utf-8", "surrogatepass"))
            else:
                size = len(data) if data is not None else 0
            if size > limit:
                return 1009, "Message too big"
            if bucket is None:
                bucket = TokenBucket(settings.MESSAGE_RATE, settings.MESSAGE_BURST)
            if not bucket.take():
                metrics.throttled_warning(
                    "message_rate_closed", "harper_resources: a client sent messages faster than allowed; closed (1008)"
                )
                return 1008, "Too many messages"
            if not incoming._push_frame(text, data):
                return 1008, "Too many unread messages"
            if hooked:
                try:
                    await (self.receive(text_data=text) if text is not None else self.receive(bytes_data=data))
                except StopConsumer:
                    return 1000, ""
                except Exception:
                    logger.exception("harper_resources: %s.receive() failed", type(self).__name__)
                    return SERVER_ERROR
            if incoming._tasks:
                # Let the async data callbacks of this frame run (and drop what it
                # decoded to) before the next frame is read.
                await asyncio.sleep(0)

    async def _write_iterated(self, outgoing: AsyncIterator[Any]) -> None:
        """Write an outgoing stream that is not a ``Stream`` (``connect()`` returned an
        async generator, say), item by item, until it ends or the client leaves."""
        send, codec = self._asgi_send, self.codec
        async for item in outgoing:
            message = asgi_message(item, codec)
            if message is not None:
                try:
                    await send(message)
                except CLIENT_GONE:  # the client is gone (uvicorn's ClientDisconnected): not an error
                    metrics.count("client_gone")
                    return

    def _writer_close(self, error: BaseException | None) -> tuple[int, str]:
        """How to close once the outgoing stream ended, by itself or by ``error``."""
        if self._close_request is not None:
            return self._close_request
        if isinstance(error, CloseConnection):
            return error.code, error.reason
        if error is not None:
            # Throttled per class: a client can make a fragile generator fail on every connection.
            name = type(self).__name__
            metrics.throttled_error(
                f"stream_failed.{name}", "harper_resources: the stream of %s failed", name, exc_info=error
            )
            return SERVER_ERROR
        for stream in self._streams:
            if stream.closed:
                return stream.close_code, stream.close_reason
        return 1000, ""

    async def _aclose(self, outgoing: AsyncIterator[Any]) -> None:
        aclose = getattr(outgoing, "aclose", None)
        if aclose is None:
            return
        try:
            await aclose()
        except Exception:
            logger.exception("harper_resources: closing the stream of %s failed", type(self).__name__)

    def _finish(self, incoming: IncomingMessages) -> None:
        """End the connection's objects: incoming messages, streams (close callbacks,
        tasks, hub subscriptions). Safe to call again."""
        incoming._end()
        for stream in self._streams:
            stream._finish()
        self._streams.clear()

    async def _close(self, code: int, reason: str) -> None:
        # The code, or its 40xx fallback where the server cannot send it (daphne).
        self._close_sent = True
        await closing.close(self._asgi_send, code, reason)


def _first_read(resource: Resource) -> tuple[list[Frame], list[Frame]]:
    return resource._first_read()


#: On the thread ``database_sync_to_async`` shares with user code, not the handshake
#: thread: there the first read raced a save made meanwhile from that thread, and a
#: collection could get a state twice (tests/test_versions.py's multi-table test on
#: PostgreSQL, about 1 run in 4). Built once: a wrapper per connection costs more than
#: the hop.
_first_read_in_thread = database_sync_to_async(_first_read)


class _Listener:
    """A stream's hub listener of ``group``: its ``send``, minus messages published
    through resources its resource does not accept (``accepted``: shared by every
    connection of the class). ``leave`` unsubscribes it."""

    __slots__ = ("accepted", "group", "hub", "send")

    def __init__(self, send: Callable[[Frame], None], accepted: frozenset[str], hub: Hub, group: str) -> None:
        self.send = send
        self.accepted = accepted
        self.hub = hub
        self.group = group

    def __call__(self, frame: Frame) -> None:
        if frame.source is None or frame.source in self.accepted:
            self.send(frame)

    def leave(self) -> None:
        self.hub.unsubscribe(self.group, self)


_accepted: dict[type[Resource], frozenset[str]] = {}


def _accepted_sources(cls: type[Resource]) -> frozenset[str]:
    """The message sources ``cls`` accepts: its own and ``accepts_messages_from``'s
    (worked out once per class)."""
    accepted = _accepted.get(cls)
    if accepted is None:
        others = (other.message_source() for other in cls.accepts_messages_from)
        accepted = _accepted[cls] = frozenset({cls.message_source(), *others})
    return accepted
