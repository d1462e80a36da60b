"""WebSocket routes the communicator tests connect to."""

from django.urls import path

from harper_resources import Resource
from harper_resources.routing import ResourceRouter
from project.dogs.models import Dog
from project.dogs.resources import DogStatus
from tests.testapp.resources import GadgetResource, StampedResource, TagResource


class PublicDogs(Resource):
    """The default stream of Dog, readable by anyone."""

    model = Dog

    def allow_read(self, user):
        return True


websocket_urlpatterns = [
    path("dog/<str:id>", PublicDogs.as_asgi()),
    path("dog/", PublicDogs.as_asgi()),
    path("status/<str:id>", DogStatus.as_asgi()),
    path("gadget/<str:id>", GadgetResource.as_asgi()),
    path("tag/<path:id>", TagResource.as_asgi()),
    path("stamped/<str:id>", StampedResource.as_asgi()),
]

application = ResourceRouter(websocket_urlpatterns)
