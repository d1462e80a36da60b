"""HTTP on a resource path: the event stream or REST, chosen per request.

``Resource.__call__`` hands every ``http`` scope to ``serve``: a ``GET`` whose ``Accept``
names ``text/event-stream`` goes to ``harper_resources.sse``, any other request to
``harper_resources.rest``. The small helpers here (headers, JSON answers, binding the
URL's id) are shared by both.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable
from typing import TYPE_CHECKING, Any

from . import protocol, tables
from .auth import AUTH_FAILED

if TYPE_CHECKING:
    from .consumers import Resource

Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]
#: A login still to do: ``await login(scope, defer_user_check)`` (``handshake.PENDING_LOGIN``).
Login = Callable[..., Awaitable[None]]

EVENT_STREAM = "text/event-stream"
JSON = "application/json"
#: The realm a 401 names in ``WWW-Authenticate``.
REALM = "harper_resources"


def header(scope: dict[str, Any], name: bytes) -> str | None:
    """The value of request header ``name`` (lower case bytes), or None; repeated
    headers are joined with ``", "``."""
    values = [value for key, value in scope.get("headers", ()) if key.lower() == name]
    if not values:
        return None
    return b", ".join(values).decode("latin-1")


def media_types(accept: str | None) -> list[str]:
    """The media types an ``Accept`` header lists (lower case, without parameters),
    leaving out those with ``q=0``."""
    found = []
    for part in (accept or "").split(","):
        media, *params = (item.strip() for item in part.split(";"))
        quality = 1.0
        for param in params:
            name, _, value = param.partition("=")
            if name.strip().lower() == "q":
                try:
                    quality = float(value)
                except ValueError:
                    quality = 0.0
        if media and quality > 0:
            found.append(media.lower())
    return found


def wants_event_stream(scope: dict[str, Any]) -> bool:
    """True for a ``GET`` that accepts ``text/event-stream``."""
    return scope.get("method") == "GET" and EVENT_STREAM in media_types(header(scope, b"accept"))


async def respond(
    send: Send,
    status: int,
    body: bytes = b"",
    content_type: str | None = None,
    headers: Iterable[tuple[str, str]] = (),
    head: bool = False,
) -> None:
    """Send a whole response; ``head`` keeps the headers (and ``Content-Length``) of
    ``body`` but sends no body."""
    raw = [(name.lower().encode("latin-1"), value.encode("latin-1")) for name, value in headers]
    if content_type is not None:
        raw.append((b"content-type", content_type.encode("latin-1")))
    if status not in (204, 304):
        raw.append((b"content-length", str(len(body)).encode("ascii")))
    await send({"type": "http.response.start", "status": status, "headers": raw})
    await send({"type": "http.response.body", "body": b"" if head or status in (204, 304) else body})


async def respond_json(
    send: Send, status: int, value: Any, headers: Iterable[tuple[str, str]] = (), head: bool = False
) -> None:
    """Send ``value`` as JSON (the frames' encoder: datetimes, decimals, UUIDs work)."""
    await respond(send, status, protocol.encode(value).encode("utf-8"), JSON, headers, head)


def unauthorized_headers() -> list[tuple[str, str]]:
    """The ``WWW-Authenticate`` challenge of a 401."""
    return [("WWW-Authenticate", f'Basic realm="{REALM}", charset="UTF-8"')]


def bind(resource: Resource, scope: dict[str, Any]) -> bool:
    """Set the resource's ``scope``, ``user``, ``id`` and ``pk`` from the request, as a
    WebSocket handshake does. Returns False when the URL's id can never name a record
    of the model (``/dog/abc`` for an integer key): answer 404. Does not check
    credentials (``credentials_failed``) or permissions."""
    resource.scope = scope
    user = scope.get("user")
    if user is None:
        from django.contrib.auth.models import AnonymousUser  # not at import: asgi.py may import us first

        user = AnonymousUser()
    resource.user = user
    raw_id = scope.get("url_route", {}).get("kwargs", {}).get(resource.id_kwarg)
    resource.id = None if raw_id is None else str(raw_id)
    if resource.model is not None and resource.id is not None:
        try:
            resource.pk = tables.parse_pk(resource.model, resource.id)
        except ValueError:
            return False
    else:
        resource.pk = resource.id
    return True


def credentials_failed(scope: dict[str, Any]) -> bool:
    """True when the request sent Basic or Bearer credentials that did not authenticate
    (answer 401 whatever the resource allows anonymous users)."""
    return bool(scope.get(AUTH_FAILED))


async def serve(
    resource: Resource, scope: dict[str, Any], receive: Receive, send: Send, login: Login | None = None
) -> None:
    """Answer one HTTP request on ``resource``'s path: an event stream for ``Accept:
    text/event-stream``, REST for everything else. ``login``: the login still to do
    (``handshake.PENDING_LOGIN``), if any."""
    if wants_event_stream(scope):
        from . import sse

        if login is not None:
            await login(scope)
        await sse.serve_events(resource, scope, receive, send)
        return
    from . import rest

    await rest.serve(resource, scope, receive, send, login)
