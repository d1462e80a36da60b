"""The demo plus test-only resource paths, for live SSE tests and the SSE benchmark arm.

Served by ``resource_application`` as the demo is (event streams through
``harper_resources.http``), with a few more resource routes and ``GET /_sse_state``:
this process's hub listeners and live stream objects as JSON, so tests can see that
departed clients left nothing behind.
"""

from project import asgi

demo_application = asgi.application  # Django is set up from here on

import gc  # noqa: E402
from typing import Any  # noqa: E402

from channels.routing import URLRouter  # noqa: E402
from django.urls import path, re_path  # noqa: E402

from harper_resources import Resource, http, hub  # noqa: E402
from harper_resources.routing import resource_application  # noqa: E402
from harper_resources.streams import Stream  # noqa: E402
from project.dogs.models import Dog  # noqa: E402
from project.routing import resource_urlpatterns as demo_routes  # noqa: E402
from tests import resources  # noqa: E402


class PlainDogs(Resource):
    """The default stream of Dog, readable by anyone (no pulse, unlike the demo's /dog/)."""

    model = Dog

    def allow_read(self, user: Any) -> bool:
        return True


async def state(scope: Any, receive: Any, send: Any) -> None:
    """This process's hub listeners by group and its live ``Stream`` objects."""
    gc.collect()
    listeners: dict[str, int] = {}
    for running in hub.running_hubs():
        for group, members in running._listeners.items():
            listeners[group] = listeners.get(group, 0) + len(members)
    streams = sum(1 for obj in gc.get_objects() if isinstance(obj, Stream))
    await http.respond_json(send, 200, {"listeners": listeners, "streams": streams})


resource_routes = [
    *demo_routes,
    path("plain-dog/<str:id>", PlainDogs.as_asgi()),
    path("plain-dog/", PlainDogs.as_asgi()),
    path("private-dog/<str:id>", resources.PrivateDogs.as_asgi()),  # needs the view permission
    path("two-then-done/<str:id>", resources.TwoThenDone.as_asgi()),  # a generator that ends
]

application = resource_application(
    resource_routes,
    http=URLRouter([path("_sse_state", state), re_path(r"", asgi.django_application)]),
)
