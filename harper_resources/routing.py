"""Routing helpers: a URLRouter whose unknown paths close with 4404 instead of an error,
and ``resource_application``: one list of resource routes served over WebSocket and HTTP."""

from __future__ import annotations

from collections.abc import Awaitable
from typing import Any, NoReturn

from channels.routing import ProtocolTypeRouter, URLRouter
from django.urls import Resolver404, re_path

from . import closing
from . import http as http_answers
from .auth import OriginValidator, ResourceAuthMiddlewareStack
from .exceptions import ResourceNotFound
from .handover import hands_over
from .servers import bound_daphne_pongs


async def not_found(scope: Any, receive: Any, send: Any) -> None:
    """ASGI app for a WebSocket path no resource answers: accept (with the first
    subprotocol offered, as a resource does by default), then close 4404."""
    if (await receive())["type"] != "websocket.connect":
        return
    error = ResourceNotFound()
    closing.log_refusal(scope, scope.get("user"), error.code)
    offered = scope.get("subprotocols") or ()
    await send({"type": "websocket.accept", "subprotocol": offered[0] if offered else None})
    await closing.close(send, error.code, error.reason)


class ResourceRouter(URLRouter):  # type: ignore[misc]
    """``URLRouter(routes)`` that answers any other WebSocket path with close 4404.

    It routes as ``URLRouter`` does (the route's application gets a copy of the scope
    with ``path_remaining`` and ``url_route``), but returns that application's coroutine
    instead of awaiting it in one of its own: an open socket keeps no frame of the
    router (nor the scope it was given)."""

    def __init__(self, routes: list[Any]) -> None:
        super().__init__([*routes, re_path(r"", not_found)])  # type: ignore[arg-type]

    @hands_over
    def __call__(self, scope: Any, receive: Any, send: Any) -> Awaitable[None]:
        return _match(self, scope, receive, send)[0]


def _match(router: URLRouter, scope: Any, receive: Any, send: Any, start: int = 0) -> tuple[Awaitable[None], bool]:
    """``URLRouter.__call__``'s routing, done at once from route ``start`` on: the
    matching route's application called (not awaited) with the routed scope, and
    whether that is final. A resource (or the 4404 answer) is; a nested plain
    ``URLRouter`` is routed here too; any other application may still raise
    ``Resolver404`` when awaited, so it comes wrapped to try the next routes then, as
    Channels does (``_next_on_404``)."""
    path = _path(scope)
    routes = router.routes
    for index in range(start, len(routes)):
        route = routes[index]
        try:
            routed = _routed(route, scope, path)
            if routed is None:
                continue
            application: Any = route.callback
            if _routes_itself(application):
                inner, final = _match(application, routed, receive, send)
            else:
                inner, final = application(routed, receive, send), application is not_found or _is_resource(application)
            if final:
                return inner, True
            return _next_on_404(inner, router, scope, receive, send, index + 1), False
        except Resolver404:
            pass
    return _no_route(scope, path)


def resource_route(router: URLRouter, scope: Any) -> tuple[Any, dict[str, Any]] | None:
    """Where ``_match`` would route ``scope``, without calling anything: ``(the
    application, its routed scope)`` when that is a ``Resource`` whose ``__call__`` is
    ``Resource.__call__`` itself, else None (another application, no route, an error)."""
    from .consumers import Resource

    try:
        path = _path(scope)
    except ValueError:
        return None
    for route in router.routes:
        try:
            routed = _routed(route, scope, path)
            if routed is None:
                continue
            application: Any = route.callback
            if _routes_itself(application):
                return resource_route(application, routed)
        except Resolver404:
            continue
        consumer = getattr(application, "consumer_class", None) if _is_resource(application) else None
        if consumer is not None and consumer.__call__ is Resource.__call__:
            return application, routed
        return None
    return None


def _path(scope: Any) -> str:
    """The path a router matches: ``path_remaining`` inside another router, else the path
    without ``root_path``; no leading slash."""
    path = scope.get("path_remaining", scope.get("path", None))
    if path is None:
        raise ValueError("No 'path' key in connection scope, cannot route URLs")
    if "path_remaining" not in scope:  # the outermost router: handle root_path
        root_path = scope.get("root_path", "")
        if root_path and not path.startswith(root_path):
            raise ValueError(f"No route found for path {path!r}.")
        path = path[len(root_path) :]
    return str(path.lstrip("/"))


def _routed(route: Any, scope: Any, path: str) -> dict[str, Any] | None:
    """The scope ``route``'s application gets (``path_remaining`` and ``url_route`` added
    to a copy), or None if ``path`` does not match it."""
    match = route.pattern.match(path)
    if not match:
        return None
    new_path, args, kwargs = match
    kwargs.update(route.default_args)
    outer = scope.get("url_route", {})
    url_route = {"args": outer.get("args", ()) + args, "kwargs": {**outer.get("kwargs", {}), **kwargs}}
    return dict(scope, path_remaining=new_path, url_route=url_route)


def _routes_itself(application: Any) -> bool:
    """Is ``application`` a router whose routing ``_match`` does (``URLRouter`` or
    ``ResourceRouter`` itself, not a subclass with a ``__call__`` of its own)?"""
    return type(application).__call__ in (URLRouter.__call__, ResourceRouter.__call__)


def _no_route(scope: Any, path: str) -> NoReturn:
    """Raise as ``URLRouter`` does for no route: ``Resolver404`` inside another router."""
    if "path_remaining" in scope:
        raise Resolver404(f"No route found for path {path!r}.")
    raise ValueError(f"No route found for path {path!r}.")


async def _next_on_404(
    inner: Awaitable[None], router: URLRouter, scope: Any, receive: Any, send: Any, start: int
) -> None:
    """Await ``inner``; if it raises ``Resolver404`` (a nested router behind middleware
    found nothing), route on from ``router``'s route ``start``, as ``URLRouter`` does."""
    try:
        return await inner
    except Resolver404:
        pass
    await _match(router, scope, receive, send, start)[0]


def _is_resource(application: Any) -> bool:
    from .consumers import Resource

    consumer = getattr(application, "consumer_class", None)
    return isinstance(consumer, type) and issubclass(consumer, Resource)


def _matches(routes: list[Any], path: str) -> bool:
    """True if one of ``routes`` (and of nested ``URLRouter``s) leads ``path`` (no leading
    slash) to a ``Resource``."""
    for route in routes:
        try:
            match = route.pattern.match(path)
        except Resolver404:
            continue
        if not match:
            continue
        if isinstance(route.callback, URLRouter):
            return _matches(route.callback.routes, match[0].lstrip("/"))
        return _is_resource(route.callback)
    return False


async def _not_found(scope: Any, receive: Any, send: Any) -> None:
    await http_answers.respond_json(send, 404, {"error": "No resource at this path"})


class ResourceHTTPRouter:
    """The ``http`` side of ``resource_application``: a request whose path a resource
    route matches goes through ``ResourceAuthMiddlewareStack`` to that resource (REST or
    an event stream); any other request goes to ``fallback`` untouched (the session is
    loaded only once, by Django's own middleware). Without ``fallback``, other paths
    answer 404 JSON."""

    def __init__(self, routes: list[Any], fallback: Any = None) -> None:
        self.routes = list(routes)
        self.resources = ResourceAuthMiddlewareStack(URLRouter(self.routes))
        self.fallback = fallback if fallback is not None else _not_found

    def handles(self, scope: Any) -> bool:
        """True if a resource answers this request's path."""
        path = scope.get("path", "")
        root_path = scope.get("root_path", "")
        if root_path:
            if not path.startswith(root_path):
                return False
            path = path[len(root_path) :]
        return _matches(self.routes, path.lstrip("/"))

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if self.handles(scope):
            await self.resources(scope, receive, send)
        else:
            await self.fallback(scope, receive, send)


def resource_application(urlpatterns: list[Any], http: Any = None) -> ProtocolTypeRouter:
    """The whole ASGI application for ``urlpatterns`` (``path("dog/<str:id>",
    DogResource.as_asgi())``, ...), one list for both protocols:

    - ``websocket``: ``OriginValidator(ResourceAuthMiddlewareStack(ResourceRouter(urlpatterns)))``
      (unknown paths close 4404);
    - ``http``: resource paths answer REST and event streams (session cookie, Basic or
      Bearer); every other path goes to ``http`` (usually ``get_asgi_application()``),
      or answers 404 JSON when ``http`` is None.

    Under daphne it also bounds the pongs daphne owes a client that floods pings and
    never reads (``servers.bound_daphne_pongs``).
    """
    bound_daphne_pongs()
    websocket = OriginValidator(ResourceAuthMiddlewareStack(ResourceRouter(urlpatterns)))
    return ProtocolTypeRouter({"websocket": websocket, "http": ResourceHTTPRouter(urlpatterns, http)})
