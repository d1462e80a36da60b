"""Arm C over Server-Sent Events: ``benchmarks.channels_app`` plus ``GET /c/dog/<id>``
(and ``/c/dog/``) with ``Accept: text/event-stream`` served by ``sse.serve_events`` on
the same ``DogBench`` resource. WebSockets and the triggers are routed as there.
"""

from __future__ import annotations

from benchmarks import channels_app

django_app = channels_app.django_app  # Django is set up from here on

from typing import Any  # noqa: E402

from channels.routing import ProtocolTypeRouter, URLRouter  # noqa: E402
from django.urls import path, re_path  # noqa: E402

from harper_resources import sse  # noqa: E402


async def events(scope: Any, receive: Any, send: Any) -> None:
    """Every request here is an event stream (as ``harper_resources.http`` routes one)."""
    await sse.serve_events(channels_app.DogBench(), scope, receive, send)


application = ProtocolTypeRouter(
    {
        "http": URLRouter([path("c/dog/<str:id>", events), path("c/dog/", events), re_path(r"", django_app)]),
        "websocket": channels_app.application,
    }
)
