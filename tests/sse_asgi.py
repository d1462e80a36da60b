"""The demo with Server-Sent Events on its resource paths, for live SSE tests and the
SSE benchmark arm, without the HTTP entry point of ``harper_resources.http``.

HTTP ``GET``s with ``Accept: text/event-stream`` on a resource path (the demo's, plus
the test-only ones below) go through the session/Basic/Bearer auth stack to
``sse.serve_events`` with a new resource instance; every other HTTP request goes to
Django (the demo's pages and admin). WebSockets are routed as in ``project.asgi``.
``GET /_sse_state`` answers this process's hub listeners and live stream objects as
JSON, so tests can see that departed clients left nothing behind.
"""

from project import asgi

demo_application = asgi.application  # Django is set up from here on

import gc  # noqa: E402
from typing import Any  # noqa: E402

from channels.routing import ProtocolTypeRouter, URLRouter  # noqa: E402
from django.urls import path, re_path  # noqa: E402

from harper_resources import Resource, hub, sse  # noqa: E402
from harper_resources.auth import ResourceAuthMiddlewareStack  # noqa: E402
from harper_resources.streams import Stream  # noqa: E402
from project.dogs.models import Dog  # noqa: E402
from project.routing import websocket_urlpatterns as demo_routes  # noqa: E402
from tests import resources  # noqa: E402


class PlainDogs(Resource):
    """The default stream of Dog, readable by anyone (no pulse, unlike the demo's /dog/)."""

    model = Dog

    def allow_read(self, user: Any) -> bool:
        return True


def events(app: Any) -> Any:
    """An ASGI app for one resource route: SSE for event-stream GETs, Django otherwise."""
    cls, initkwargs = app.consumer_class, app.consumer_initkwargs

    async def serve(scope: Any, receive: Any, send: Any) -> None:
        await sse.serve_events(cls(**initkwargs), scope, receive, send)

    authenticated = ResourceAuthMiddlewareStack(serve)

    async def route(scope: Any, receive: Any, send: Any) -> None:
        if sse.wants_events(scope):
            await authenticated(scope, receive, send)
        else:
            await asgi.django_application(scope, receive, send)

    return route


async def state(scope: Any, receive: Any, send: Any) -> None:
    """This process's hub listeners by group and its live ``Stream`` objects."""
    gc.collect()
    listeners: dict[str, int] = {}
    for running in hub.running_hubs():
        for group, members in running._listeners.items():
            listeners[group] = listeners.get(group, 0) + len(members)
    streams = sum(1 for obj in gc.get_objects() if isinstance(obj, Stream))
    await sse.respond_json(send, 200, {"listeners": listeners, "streams": streams})


resource_routes = [
    *demo_routes,
    path("plain-dog/<str:id>", PlainDogs.as_asgi()),
    path("plain-dog/", PlainDogs.as_asgi()),
    path("private-dog/<str:id>", resources.PrivateDogs.as_asgi()),  # needs the view permission
    path("two-then-done/<str:id>", resources.TwoThenDone.as_asgi()),  # a generator that ends
]

http_routes = [
    *(path(str(route.pattern), events(route.callback)) for route in resource_routes),
    path("_sse_state", state),
    re_path(r"", asgi.django_application),
]

application = ProtocolTypeRouter(
    {
        "http": URLRouter(http_routes),
        "websocket": demo_application,
    }
)
