"""REST on a resource path: ``GET``/``PUT``/``PATCH``/``DELETE`` on a record path,
``GET``/``POST`` on the collection path, from the same ``Resource`` class.

Bodies are the record's ``value`` exactly as a WebSocket ``put`` carries it (the
resource's ``fields``/``exclude``/``serialize``). Writes are validated by a
``ModelForm`` of the fields the resource exposes and go through ``save()`` and
``delete()``, so every subscriber sees them. Statuses and hooks: README, "REST on the
same path". Encoding and decoding bodies are one function each (``encode_body``,
``decode_body``): the place to add other media types.
"""

from __future__ import annotations

import functools
import inspect
import io
import json
import logging
import math
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, TypeVar
from urllib.parse import parse_qsl, quote

from asgiref.sync import sync_to_async
from channels.db import database_sync_to_async
from django import forms
from django.core.exceptions import DisallowedHost, ValidationError
from django.db import IntegrityError, OperationalError, close_old_connections, connections, models, router, transaction
from django.db.models.deletion import ProtectedError, RestrictedError
from django.db.models.fields import AutoFieldMixin
from django.db.utils import load_backend
from django.forms.models import modelform_factory
from django.middleware.csrf import CsrfViewMiddleware

from . import broadcast, codecs, executors, handshake, http, metrics, protocol, tables
from .auth import AUTH_CREDENTIAL, USER_CHECK
from .conf import settings
from .exceptions import NotAcceptable

if TYPE_CHECKING:
    from .consumers import Resource

logger = logging.getLogger("harper_resources")
T = TypeVar("T")

SAFE_METHODS = ("GET", "HEAD", "OPTIONS")
RECORD_METHODS = ("GET", "HEAD", "PUT", "PATCH", "DELETE", "OPTIONS")
COLLECTION_METHODS = ("GET", "HEAD", "POST", "OPTIONS")
PLAIN_METHODS = ("GET", "HEAD", "OPTIONS")
#: Query parameters of a collection ``GET`` that are not field filters.
PAGING = ("limit", "offset")
#: The largest ``?offset=`` (a database's 64-bit integer, less the largest limit).
MAX_OFFSET = 2**62


class Answer(Exception):
    """Stop handling the request and answer ``status`` with ``value`` as the body."""

    def __init__(self, status: int, value: Any = None, headers: list[tuple[str, str]] | None = None) -> None:
        super().__init__(status)
        self.status = status
        self.value = value
        self.headers = headers or []


class ClientGone(Exception):
    """The client disconnected before its request body arrived: nothing to answer."""


def error(status: int, message: str, errors: dict[str, list[str]] | None = None) -> Answer:
    """An error answer: ``{"error": message}``, plus ``"errors"`` (field name to
    messages; ``"__all__"`` for errors of the whole record) when given."""
    value: dict[str, Any] = {"error": message}
    if errors:
        value["errors"] = errors
    headers = http.unauthorized_headers() if status == 401 else None
    return Answer(status, value, headers)


def encode_body(codec: codecs.Codec, value: Any) -> tuple[str, bytes]:
    """The response body for ``value`` in ``codec``: ``(content type, bytes)``. JSON with
    the frames' encoder, so a record reads exactly as in a WebSocket ``put``; MessagePack
    and CBOR carry the same values."""
    if codec is codecs.JSON:
        return http.JSON, protocol.encode(value).encode("utf-8")
    return codec.content_type, codec.dumps(value)


class UnsupportedBody(ValueError):
    """A request body whose ``Content-Type`` no codec reads (answered 415)."""


def decode_body(scope: dict[str, Any], body: bytes) -> Any:
    """The request body as a value, decoded by its ``Content-Type``: JSON
    (``application/json``, ``*/*+json``), MessagePack or CBOR. Any other type, or none,
    raises ``UnsupportedBody`` (415): an HTML form of another site can send only
    ``text/plain``, ``multipart/form-data`` and ``application/x-www-form-urlencoded``,
    and a browser may replay cached Basic credentials with it, so those must never be
    read as a write. Raises ``ValueError`` (400) for a body that does not decode."""
    if not body:
        raise ValueError("The body is empty: send an object of field values")
    content_type = http.header(scope, b"content-type")
    codec = codecs.by_content_type(content_type)
    if codec is None and (content_type or "").split(";", 1)[0].strip().lower().endswith("+json"):
        codec = codecs.JSON
    if codec is None:
        raise UnsupportedBody(
            "Send the body as application/json, application/x-msgpack or application/cbor "
            f"(Content-Type {content_type!r})"
        )
    if codec is codecs.JSON:
        try:
            return json.loads(body)
        except (ValueError, UnicodeDecodeError, RecursionError) as exc:
            raise ValueError(f"The body is not valid JSON: {str(exc)[:120]}") from None
    try:
        return codec.loads(body)
    except Exception as exc:
        raise ValueError(f"The body is not valid {codec.name}: {type(exc).__name__}") from None


async def serve(
    resource: Resource, scope: dict[str, Any], receive: http.Receive, send: http.Send, login: http.Login | None = None
) -> None:
    """Answer one REST request (``login``: the login still to do, if any). Any error of
    the resource's code answers 500 with a generic body (the exception is logged, never
    sent)."""
    head = scope.get("method") == "HEAD"
    try:
        # Accept, or a .msgpack/.cbor suffix on the path (taken off the id): the answer's
        # format. JSON when Accept names nothing a codec serves (a browser's text/html).
        codec = codecs.negotiate(scope, resource.id_kwarg)
    except NotAcceptable as exc:
        await http.respond_json(send, 406, {"error": exc.reason}, head=head)
        return
    try:
        status, value, headers = await _handle(resource, scope, receive, login)
    except ClientGone:
        return
    except Answer as answer:
        status, value, headers = answer.status, answer.value, answer.headers
    except Exception:
        logger.exception("harper_resources: %s %s failed", scope.get("method"), scope.get("path"))
        status, value, headers = 500, {"error": "Server error"}, []
    if value is None:
        await http.respond(send, status, headers=headers, head=head)
        return
    content_type, body = encode_body(codec, value)
    await http.respond(send, status, body, content_type, headers, head)


def allowed_methods(resource: Resource) -> tuple[str, ...]:
    """The methods this path answers: a record path, the collection, or a plain resource."""
    if resource.model is None:
        return PLAIN_METHODS
    return COLLECTION_METHODS if resource.id is None else RECORD_METHODS


async def _handle(
    resource: Resource, scope: dict[str, Any], receive: http.Receive, login: http.Login | None
) -> tuple[int, Any, list[Any]]:
    method = str(scope.get("method", "GET")).upper()
    hook: Callable[..., Any] = resource.allow_delete if method == "DELETE" else resource.allow_update
    # A write with a def permission hook is one thread hop (_write_record), which also
    # re-checks a remembered Basic login or a Bearer token's user (auth.USER_CHECK).
    one_hop = method in ("PUT", "PATCH", "DELETE") and not inspect.iscoroutinefunction(hook)
    if login is not None:
        await login(scope, one_hop)
    if not http.bind(resource, scope):
        raise error(404, "No record at this path")
    allowed = allowed_methods(resource)
    allow = [("Allow", ", ".join(allowed))]
    if method == "OPTIONS":
        return 204, None, allow
    if method not in allowed:
        raise Answer(405, {"error": f"{method} is not allowed on this path"}, allow)
    if http.credentials_failed(scope):
        raise error(401, "Wrong or expired credentials")
    if method in SAFE_METHODS:
        await _permit(resource, resource.allow_read, resource.user)
        if resource.model is None:
            raise error(404, "This resource has no records; open it as a WebSocket or an event stream")
        if resource.id is None:
            return 200, await database_sync_to_async(_list)(resource), []
        return 200, await database_sync_to_async(_get)(resource), []
    try:
        body = await _read_body(scope, receive)
    except Answer:
        if USER_CHECK in scope:  # left to the write's hop: credentials that no longer hold answer 401 first
            await _check_user_now(resource, scope)
            if http.credentials_failed(scope):
                raise error(401, "Wrong or expired credentials") from None
        raise
    if method == "POST":
        await _permit(resource, resource.allow_create, resource.user)
        await _check_csrf(scope, body)
        data = _data(scope, body)
        pk, value = await _retrying_deadlocks(database_sync_to_async(_create), resource, data)
        collection = scope.get("path", "/")
        location = collection.rstrip("/") + "/" + quote(tables.key(pk), safe="")
        return 201, value, [("Location", location)]
    if one_hop:
        answer: tuple[int, Any, list[Any]] | None = await _write_record_in_thread(resource, scope, method, body, hook)
        if answer is None:  # the remembered login's user row no longer matched
            await _check_in_full(resource, scope)
            if http.credentials_failed(scope):
                raise error(401, "Wrong or expired credentials")
            answer = await _write_record_in_thread(resource, scope, method, body, hook)
        assert answer is not None  # the login is done: no check left
        return answer
    record = await database_sync_to_async(_visible)(resource)
    if record is None:
        raise error(404, "No record at this path")
    _refuse_unless(resource, await hook(resource.user, record))
    await _check_csrf(scope, body)
    written: tuple[int, Any, list[Any]] = await _retrying_deadlocks(
        database_sync_to_async(_write), resource, scope, method, body
    )
    return written


def _write_record(
    resource: Resource, scope: dict[str, Any], method: str, body: bytes, hook: Callable[..., Any]
) -> tuple[int, Any, list[Any]] | None:
    """``PUT``, ``PATCH`` or ``DELETE`` of the record at this path with a def permission
    hook, checked in the same order as with an async one: 404, 401/403, CSRF, body.
    First the login's re-check of the user row, when it was left to this hop
    (``auth.USER_CHECK``): None when that row no longer matches (nothing written)."""
    with transaction.atomic(using=_write_db(resource)):
        if not _finish_user_check(resource, scope):
            return None
        record = _visible(resource, lock=True)
        if record is None:
            raise error(404, "No record at this path")
        _refuse_unless(resource, hook(resource.user, record))
        if scope.get(AUTH_CREDENTIAL) is None:
            _refuse_forged(_csrf_refusal(scope, body))
        return _write(resource, scope, method, body, record)


#: Built once: making a ``database_sync_to_async`` wrapper costs more than the call.
_write_record_on_shared_thread = database_sync_to_async(_write_record)
#: Threads of REST writes on a database that locks rows (``WRITE_THREADS``).
_write_pool = executors.ProcessPool("harper-rest-write", lambda: int(settings.WRITE_THREADS))
_pooled_writes: dict[Any, Any] = {}


_row_locking: dict[str, bool] = {}


def _locks_rows(alias: str) -> bool:
    """Does database ``alias`` lock rows (``SELECT ... FOR UPDATE``)? From its backend's
    features class, once per engine: ``connections[alias]`` on the event loop would make
    a new connection object in every task."""
    engine = connections.settings[alias]["ENGINE"]
    locks = _row_locking.get(engine)
    if locks is None:
        locks = _row_locking[engine] = bool(load_backend(engine).DatabaseWrapper.features_class.has_select_for_update)
    return locks


def _write_record_closing(*args: Any) -> tuple[int, Any, list[Any]] | None:
    """``_write_record`` between two ``close_old_connections()``, called inside the
    thread's call (``database_sync_to_async`` calls them outside it, where a pool
    thread's connection is not seen: it stayed open)."""
    close_old_connections()
    try:
        return _write_record(*args)
    finally:
        close_old_connections()


async def _write_record_in_thread(
    resource: Resource, scope: dict[str, Any], method: str, body: bytes, hook: Callable[..., Any]
) -> tuple[int, Any, list[Any]] | None:
    """``_write_record`` in a thread: on a database that locks rows (``FOR UPDATE``:
    PostgreSQL, MySQL, Oracle) in the write pool (``WRITE_THREADS``), writes of other
    records running meanwhile, each thread with its own connection, as Django runs sync
    views under ASGI; on SQLite, or with ``WRITE_THREADS = 1``, on the one thread
    ``database_sync_to_async`` shares with user code (concurrent SQLite writers would
    fail with "database is locked" instead of waiting)."""
    call = _write_record_on_shared_thread
    if settings.WRITE_THREADS > 1 and _locks_rows(_write_db(resource)):
        pool = _write_pool()
        call = _pooled_writes.get(pool)
        if call is None:  # one wrapper per pool (a process made by fork() makes its own)
            _pooled_writes.clear()
            call = _pooled_writes[pool] = sync_to_async(_write_record_closing, thread_sensitive=False, executor=pool)
    answer: tuple[int, Any, list[Any]] | None = await _retrying_deadlocks(call, resource, scope, method, body, hook)
    return answer


async def _retrying_deadlocks(call: Callable[..., Awaitable[T]], *args: Any) -> T:
    """``await call(*args)`` (a write in a thread, in a transaction of its own), again if
    the database aborted it as a deadlock, ``DEADLOCK_ATTEMPTS`` times in all, then 409.
    Writes of one record through its parent and its child table (multi-table
    inheritance), from the write pool or another process, can take their row locks in
    opposite orders; the aborted one was rolled back whole."""
    attempt = 1
    while True:
        try:
            return await call(*args)
        except OperationalError as exc:
            if not _deadlocked(exc):
                raise
            if attempt == DEADLOCK_ATTEMPTS:
                raise error(409, "The database refused the change (a deadlock with concurrent writes)") from None
            metrics.count("write_deadlock_retried")
            attempt += 1


#: How many times a REST write the database aborted as a deadlock is tried.
DEADLOCK_ATTEMPTS = 3
#: SQLSTATEs of a transaction the database aborted to break a deadlock or a conflict
#: (PostgreSQL: deadlock_detected, serialization_failure), and MySQL's error numbers.
_DEADLOCK_STATES = frozenset({"40P01", "40001"})
_MYSQL_DEADLOCKS = frozenset({1213})


def _deadlocked(exc: OperationalError) -> bool:
    """Was ``exc`` the database aborting the transaction to break a deadlock?"""
    cause = exc.__cause__
    state = getattr(cause, "sqlstate", None) or getattr(cause, "pgcode", None)
    if state in _DEADLOCK_STATES:
        return True
    return bool(exc.args) and exc.args[0] in _MYSQL_DEADLOCKS


def _finish_user_check(resource: Resource, scope: dict[str, Any]) -> bool:
    """Do the login's re-check of the user row left in ``scope[USER_CHECK]``, if any (sync,
    in the write's thread hop): True when there was none or the user still matches (the
    login set in the scope and on ``resource``), False when not (the check left for
    ``_check_in_full``)."""
    check = scope.get(USER_CHECK)
    if check is None:
        return True
    user = check.user()
    if user is None:
        return False
    del scope[USER_CHECK]
    handshake.set_login(scope, user, (check.method, check.fingerprint))
    resource.user = user
    return True


async def _check_user_now(resource: Resource, scope: dict[str, Any]) -> None:
    """The login's re-check left in ``scope[USER_CHECK]``, done now in a hop of its own
    (the request is answered before its write's hop: a body refused 413, say)."""
    handshake.set_login(scope, *await scope.pop(USER_CHECK).login())
    resource.user = scope["user"]


async def _check_in_full(resource: Resource, scope: dict[str, Any]) -> None:
    """After a failed re-check (``_finish_user_check``): the login's credentials checked in
    full (a Basic password may be right for a re-hashed one), the result in the scope."""
    handshake.set_login(scope, *await scope.pop(USER_CHECK).after_failed_check())
    resource.user = scope["user"]


def _write(
    resource: Resource, scope: dict[str, Any], method: str, body: bytes, seen: models.Model | None = None
) -> tuple[int, Any, list[Any]]:
    """Delete or update the record at this path (``seen``: as read already in this
    transaction, if it was)."""
    if method == "DELETE":
        _delete(resource, seen)
        return 204, None, []
    value = _update(resource, _data(scope, body), method == "PATCH", seen)
    # None: the record is saved but this resource no longer shows it (allow_record).
    return (204, None, []) if value is None else (200, value, [])


async def _permit(resource: Resource, hook: Callable[..., Any], *args: Any) -> None:
    """Run a permission hook (def or async def); refuse with 401 when the user is not
    logged in, else 403."""
    if inspect.iscoroutinefunction(hook):
        allowed = await hook(*args)
    else:
        allowed = await database_sync_to_async(hook)(*args)
    _refuse_unless(resource, allowed)


def _refuse_unless(resource: Resource, allowed: Any) -> None:
    """401 when a permission hook said no and the user is not logged in, else 403."""
    if not allowed:
        if resource.user.is_authenticated:
            raise error(403, "Not allowed")
        raise error(401, "Must login")


async def _read_body(scope: dict[str, Any], receive: http.Receive) -> bytes:
    """The whole request body; 413 past ``MAX_MESSAGE_BYTES`` (refused from
    ``Content-Length`` before reading when it says so)."""
    limit = settings.MAX_MESSAGE_BYTES
    declared = http.header(scope, b"content-length")
    if declared is not None:
        try:
            size = int(declared)
        except ValueError:
            raise error(400, "Bad Content-Length") from None
        if size > limit:
            raise error(413, f"The body is larger than {limit} bytes")
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise ClientGone()
        if message["type"] != "http.request":
            continue
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            raise error(413, f"The body is larger than {limit} bytes")
        chunks.append(chunk)
        if not message.get("more_body", False):
            return b"".join(chunks)


class _CsrfCheck(CsrfViewMiddleware):
    """Django's CSRF check, answering the reason of a refusal instead of its 403 page."""

    def _reject(self, request: Any, reason: str) -> Any:
        return reason


def _never_called(request: Any) -> Any:
    """The view and ``get_response`` the CSRF check is given: it calls neither."""
    raise AssertionError("the CSRF check never calls the view")


def _csrf_refusal(scope: dict[str, Any], body: bytes) -> str | None:
    """Why Django's ``CsrfViewMiddleware`` refuses this request (None: it accepts it),
    judged on a Django request built from the scope (cookie, ``X-CSRFToken``,
    ``Origin``/``Referer``, ``CSRF_TRUSTED_ORIGINS``, ``CSRF_USE_SESSIONS``)."""
    from django.core.handlers.asgi import ASGIRequest

    request = ASGIRequest(scope, io.BytesIO(body))
    if "session" in scope:
        request.session = scope["session"]
    try:
        refusal = _CsrfCheck(_never_called).process_view(request, _never_called, (), {})
    except DisallowedHost:
        return "Host not allowed"
    return None if refusal is None else str(refusal)


async def _check_csrf(scope: dict[str, Any], body: bytes) -> None:
    """Refuse (403) an unsafe request without a valid CSRF token, unless it was
    authenticated by Basic or Bearer credentials (a browser never adds those by itself)."""
    if scope.get(AUTH_CREDENTIAL) is not None:
        return
    _refuse_forged(await database_sync_to_async(_csrf_refusal)(scope, body))


def _refuse_forged(reason: str | None) -> None:
    if reason is not None:
        raise error(403, f"CSRF check failed: {reason}")


def _data(scope: dict[str, Any], body: bytes) -> dict[str, Any]:
    try:
        data = decode_body(scope, body)
    except NotAcceptable as exc:  # MessagePack or CBOR sent, its library not installed
        raise error(415, exc.reason) from None
    except UnsupportedBody as exc:
        raise error(415, str(exc)[:200]) from None
    except ValueError as exc:
        raise error(400, str(exc)[:200]) from None
    if not isinstance(data, dict):
        raise error(400, "The body must be an object of field values")
    return data


# Fields --------------------------------------------------------------------------------


def exposed_fields(resource: Resource) -> dict[str, Any]:
    """The model fields in this resource's ``value`` (before ``serialize``), by name:
    what filters may name and what bodies may hold."""
    cls = type(resource)
    assert cls.model is not None
    keep = None if cls.fields is None else set(cls.fields)
    drop = set(cls.exclude) | set(tables.secret_fields(cls.model))
    return {
        field.name: field
        for field in tables.value_fields(cls.model)
        if (field.name in keep if keep is not None else field.name not in drop)
    }


def _writable(field: Any, creating: bool) -> bool:
    if not field.editable or isinstance(field, AutoFieldMixin):
        return False
    # A record's key is set when it is created, never changed (that would be another record).
    return creating or not field.primary_key


def _value(resource: Resource, instance: models.Model) -> dict[str, Any] | None:
    """The record as this resource's ``put`` value, or None if ``allow_record`` hides it."""
    value = tables.record_value(instance)
    if not resource._allows(value):
        return None
    projection = resource._projection()
    return value if projection is None else projection.value(value)


# Reads ---------------------------------------------------------------------------------


def _get(resource: Resource) -> dict[str, Any]:
    record = resource.get_queryset().filter(pk=resource.pk).first()
    value = None if record is None else _value(resource, record)
    if value is None:
        raise error(404, "No record at this path")
    return value


def _list(resource: Resource) -> list[dict[str, Any]]:
    queryset = resource.get_queryset().order_by("pk")
    fields = exposed_fields(resource)
    limit, offset = settings.COLLECTION_LIMIT, 0
    lookups: dict[str, list[Any]] = {}
    problems: dict[str, list[str]] = {}
    for name, raw in parse_qsl(resource.scope.get("query_string", b"").decode("latin-1"), keep_blank_values=True):
        if name in PAGING:
            try:
                number = int(raw)
            except ValueError:
                number = -1
            largest = settings.COLLECTION_LIMIT if name == "limit" else MAX_OFFSET
            if not 0 <= number <= largest:
                most = f" to {largest}"
                problems[name] = [f"Must be a whole number from 0{most}."]
            elif name == "limit":
                limit = number
            else:
                offset = number
            continue
        field = fields.get(name)
        if field is None:
            problems[name] = ["Not a field of this resource."]
            continue
        try:
            lookups.setdefault(field.attname, []).append(field.to_python(raw))
        except ValidationError as exc:
            problems[name] = list(exc.messages)
    if problems:
        raise error(400, "Bad query", problems)
    for attname, values in lookups.items():
        queryset = queryset.filter(**({attname: values[0]} if len(values) == 1 else {f"{attname}__in": values}))
    shown = (_value(resource, record) for record in queryset[offset : offset + limit])
    return [value for value in shown if value is not None]


def _plain_reads(resource: Resource) -> bool:
    """True if one plain read by key (``tables.read_row``) is what this resource's
    ``get_queryset`` returns for its record: the default one, on a plain manager."""
    from .consumers import Resource  # a cycle at import time

    assert resource.model is not None
    return type(resource).get_queryset is Resource.get_queryset and tables.plain_manager(resource.model)


def _locks_when_read(resource: Resource) -> bool:
    """True if ``_visible(resource, lock=True)`` reads the record locked: a plain read, on
    the database written to."""
    assert resource.model is not None
    return _plain_reads(resource) and router.db_for_read(resource.model) == _write_db(resource)


def _visible(resource: Resource, lock: bool = False) -> models.Model | None:
    """The record at this path, if this resource shows it (``get_queryset``, ``allow_record``).
    ``lock`` (inside the write's transaction): read it locked (``FOR UPDATE``, where the
    database can) when ``_locks_when_read``, so the write needs no second read."""
    model = resource.model
    assert model is not None
    if _plain_reads(resource):
        locking = lock and _locks_when_read(resource)
        record = tables.read_row(model, resource.pk, router.db_for_read(model), for_update=locking)
    else:
        record = resource.get_queryset().filter(pk=resource.pk).first()
    if record is None or not resource._allows(tables.record_value(record)):
        return None
    return record


# Writes --------------------------------------------------------------------------------


def _form_data(resource: Resource, data: dict[str, Any], creating: bool) -> tuple[dict[str, Any], list[str]]:
    """``data`` checked against the exposed fields: the writable ones (by name), and
    400 for names the resource does not expose or a key that does not match the path.
    Read-only exposed fields (the key, non-editable fields) are ignored, so a body read
    with ``GET`` can be sent back as it is."""
    fields = exposed_fields(resource)
    problems: dict[str, list[str]] = {}
    writable: dict[str, Any] = {}
    for name, item in data.items():
        field = fields.get(name)
        if field is None:
            problems[name] = ["Not a field of this resource."]
        elif _writable(field, creating):
            wrong = _wrong_type(field, item)
            if wrong is not None:
                problems[name] = [wrong]
            writable[name] = item
        elif field.primary_key and resource.pk is not None:
            try:
                same = tables.key(field.to_python(item)) == tables.key(resource.pk)
            except ValidationError:
                same = False
            if not same:
                problems[name] = ["Does not match the id in the path."]
    if problems:
        raise error(400, "Invalid data", problems)
    names = [name for name, field in fields.items() if _writable(field, creating)]
    return writable, names


def _wrong_type(field: models.Field[Any, Any], value: Any) -> str | None:
    """Why ``value`` cannot be a value of ``field``, or None. A form field takes any
    Python value and reads it as text (a list ``['a']`` stored as the text "['a']"), so
    only what the wire formats carry for such a field passes: text, numbers and null;
    ``true``/``false`` only for a boolean field; lists only for many-to-many and
    multiple-choice fields; objects only for a JSON field."""
    if value is None or isinstance(field, models.JSONField):
        return None
    if isinstance(value, bool):
        return None if isinstance(field, models.BooleanField) else "Expected a text or a number, not a boolean."
    if isinstance(value, float) and not math.isfinite(value):
        return "Expected a finite number."
    if isinstance(value, (str, int, float)):
        return None
    if isinstance(value, list) and isinstance(
        field.formfield(), (forms.MultipleChoiceField, forms.ModelMultipleChoiceField)
    ):
        return None  # a many-to-many or multiple-choice field takes a list
    return f"Expected a text or a number, not {type(value).__name__}."


def _defaults(resource: Resource, writable: dict[str, Any], names: list[str]) -> tuple[list[str], dict[str, Any]]:
    """For a whole record (``PUT``, ``POST``): the fields the form validates, and the
    model defaults of those the body leaves out that have one (set as they are, as a
    new instance has them, rather than refused as missing by the form). Omitted fields
    without a default stay in the form, which may require them."""
    fields = exposed_fields(resource)
    defaults = {
        fields[name].attname: fields[name].get_default()
        for name in names
        if name not in writable and fields[name].has_default()
    }
    return [name for name in names if name in writable or not fields[name].has_default()], defaults


@functools.lru_cache(maxsize=256)
def _form_class(model: type[models.Model], names: tuple[str, ...]) -> type[forms.ModelForm[Any]]:
    """The ModelForm of ``names`` (made once: building one costs more than using it)."""
    form_class: type[forms.ModelForm[Any]] = modelform_factory(model, fields=names)
    return form_class


def _form(resource: Resource, names: list[str], data: dict[str, Any], instance: models.Model | None) -> Any:
    assert resource.model is not None
    form = _form_class(resource.model, tuple(names))(data=data, instance=instance)
    if not form.is_valid():
        errors = {name: [str(message) for message in messages] for name, messages in form.errors.items()}
        raise error(400, "Invalid data", errors)
    return form


def _stored_value(resource: Resource, pk: Any, using: str) -> dict[str, Any] | None:
    """The stored row's value after a write (what subscribers get), as this resource shows
    it: the row the write's own broadcast read back (``broadcast.take_saved_row``), else
    read here."""
    model = resource.model
    assert model is not None
    saved = broadcast.take_saved_row(using)
    if saved is not None and saved[0] is model and saved[1] == tables.key(pk):
        row = saved[2]
    else:
        row = tables.read_row(model, pk, using)
    return None if row is None else _value(resource, row)


def _create(resource: Resource, data: dict[str, Any]) -> tuple[Any, dict[str, Any] | None]:
    writable, names = _form_data(resource, data, creating=True)
    names, _ = _defaults(resource, writable, names)  # a new instance has its defaults already
    form = _form(resource, names, writable, None)
    try:
        with transaction.atomic(using=_write_db(resource)):
            broadcast.take_saved_row(_write_db(resource))  # only this save's row is used
            instance = form.save()
            value = _stored_value(resource, instance.pk, instance._state.db or "default")
    except IntegrityError:
        raise error(409, "The database refused the record") from None
    return instance.pk, value


def _write_db(resource: Resource) -> str:
    assert resource.model is not None
    return router.db_for_write(resource.model)


def _locked(resource: Resource, seen: models.Model | None) -> models.Model:
    """The record at this path, locked until the transaction ends (where the database
    can: not SQLite, whose writers wait for each other anyway); 404 if it is gone.
    ``seen`` is the record as read already in this transaction (``_visible``): when it
    was read locked, or there is no lock to take, it is that record (when it is a whole
    row of the model), not a second read."""
    assert resource.model is not None
    using = _write_db(resource)
    if seen is not None and type(seen) is resource.model and not seen.get_deferred_fields():
        if _locks_when_read(resource) or not transaction.get_connection(using).features.has_select_for_update:
            return seen  # read locked already, or there is no lock to take
    manager = resource.model._base_manager.db_manager(using)
    record = manager.select_for_update().filter(pk=resource.pk).first()
    if record is None:
        raise error(404, "No record at this path")
    return record


def _update(
    resource: Resource, data: dict[str, Any], partial: bool, seen: models.Model | None = None
) -> dict[str, Any] | None:
    """``PUT`` (every writable exposed field: omitted ones take their default or fail as
    required) or ``PATCH`` (only the fields sent, saved with ``update_fields``)."""
    assert resource.model is not None
    writable, names = _form_data(resource, data, creating=False)
    defaults: dict[str, Any] = {}
    if partial:
        names = [name for name in names if name in writable]
    else:
        names, defaults = _defaults(resource, writable, names)
    try:
        # No savepoint when the caller's transaction holds it: any failure ends the write.
        with transaction.atomic(using=_write_db(resource), savepoint=seen is None):
            record = _locked(resource, seen)
            form = _form(resource, names, writable, record)
            instance = form.save(commit=False)
            for attname, value in defaults.items():
                setattr(instance, attname, value)
            broadcast.take_saved_row(_write_db(resource))  # only this save's row is used
            # PATCH writes only its fields: concurrent PATCHes of other fields all stay.
            instance.save(update_fields=names if partial else None)
            return _stored_value(resource, instance.pk, instance._state.db or "default")
    except IntegrityError:
        raise error(409, "The database refused the change") from None


def _delete(resource: Resource, seen: models.Model | None = None) -> None:
    try:
        with transaction.atomic(using=_write_db(resource), savepoint=seen is None):
            _locked(resource, seen).delete()
    except (ProtectedError, RestrictedError):
        raise error(409, "Other records refer to this one") from None
