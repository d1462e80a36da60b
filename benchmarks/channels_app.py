"""Arms B and C on one Django project, served by uvicorn like arm A.

- B, a stock Channels ``AsyncJsonWebsocketConsumer`` joined to a group per topic:
  WebSocket ``/b/ws/<topic>``; ``POST /b/trigger?topic=T`` does ``group_send``.
- C, harper_resources: WebSocket ``/c/dog/<id>`` and ``/c/dog/``; its changes are REST
  writes to the same resource, ``PUT /c/dog/<id>`` (HTTP Basic, the benchmark's superuser).
  ``POST /c/trigger`` (body: the record) saves the Dog in a Django view instead (the SSE
  and binary-format comparisons use it: there both sides of a ratio share the trigger).
- ``secure_application``: C under the demo's real WebSocket stack,
  ``OriginValidator(ResourceAuthMiddlewareStack(ResourceRouter(...)))`` (session cookie,
  HTTP Basic or Bearer, origin check), for the handshake benchmarks.
"""

from __future__ import annotations

import json
import os
import time

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "benchmarks.settings")

from django.core.asgi import get_asgi_application

django_app = get_asgi_application()

from asgiref.sync import sync_to_async  # noqa: E402
from channels.generic.websocket import AsyncJsonWebsocketConsumer  # noqa: E402
from channels.layers import get_channel_layer  # noqa: E402
from channels.routing import ProtocolTypeRouter, URLRouter  # noqa: E402
from django.http import HttpResponse  # noqa: E402
from django.urls import path  # noqa: E402
from django.views.decorators.csrf import csrf_exempt  # noqa: E402

from harper_resources import Resource  # noqa: E402
from harper_resources.auth import OriginValidator, ResourceAuthMiddlewareStack  # noqa: E402
from harper_resources.routing import ResourceHTTPRouter, ResourceRouter  # noqa: E402
from project.dogs.models import Dog  # noqa: E402


class StockConsumer(AsyncJsonWebsocketConsumer):
    async def connect(self):
        self.group = "bench." + self.scope["url_route"]["kwargs"]["topic"]
        await self.channel_layer.group_add(self.group, self.channel_name)
        await self.accept()

    async def disconnect(self, code):
        await self.channel_layer.group_discard(self.group, self.channel_name)

    async def bench_change(self, event):
        await self.send_json(event["frame"])


class DogBench(Resource):
    model = Dog

    def allow_read(self, user):
        return True


@csrf_exempt
async def stock_trigger(request):
    record = json.loads(request.body)
    now = time.time() * 1000
    frame = {"id": record.get("id"), "localTime": now, "value": record, "version": now, "type": "put"}
    for topic in [request.GET.get("topic", "1"), *request.GET.getlist("also")]:
        await get_channel_layer().group_send("bench." + topic, {"type": "bench.change", "frame": frame})
    return HttpResponse(status=204)


def _save(record):
    dog = Dog(id=record["id"], name=record["name"], breed=record["breed"], age=record["age"])
    dog.save()


@csrf_exempt
async def harper_trigger(request):
    await sync_to_async(_save)(json.loads(request.body))
    return HttpResponse(status=204)


urlpatterns = [path("b/trigger", stock_trigger), path("c/trigger", harper_trigger)]

resource_routes = [path("c/dog/<str:id>", DogBench.as_asgi()), path("c/dog/", DogBench.as_asgi())]

application = ProtocolTypeRouter(
    {
        # REST on the resource paths (C's writes: PUT /c/dog/<id>), Django for the rest.
        "http": ResourceHTTPRouter(resource_routes, fallback=django_app),
        "websocket": URLRouter(
            [
                path("b/ws/<str:topic>", StockConsumer.as_asgi()),
                path("c/dog/<str:id>", DogBench.as_asgi()),
                path("c/dog/", DogBench.as_asgi()),
            ]
        ),
    }
)

secure_application = ProtocolTypeRouter(
    {
        "http": django_app,
        "websocket": OriginValidator(
            ResourceAuthMiddlewareStack(
                ResourceRouter([path("c/dog/<str:id>", DogBench.as_asgi()), path("c/dog/", DogBench.as_asgi())])
            )
        ),
    }
)
