"""WebSocket routes the communicator tests connect to."""

from django.urls import path, re_path

from harper_resources import Resource
from harper_resources.auth import ResourceAuthMiddlewareStack
from harper_resources.routing import ResourceRouter
from project.dogs.models import Dog
from project.dogs.resources import DogStatus
from project.dogs.seed_examples import DogNotes, DogStatusMinimal, DogStatusSeed
from tests import resources
from tests.testapp.resources import AnimalResource, GadgetResource, StampedResource, TagResource


class PublicDogs(Resource):
    """The default stream of Dog, readable by anyone."""

    model = Dog

    def allow_read(self, user):
        return True


websocket_urlpatterns = [
    path("dog/<str:id>", PublicDogs.as_asgi()),
    path("dog/", PublicDogs.as_asgi()),
    re_path(r"^suffixed-dog/(?:\.msgpack|\.cbor)?$", PublicDogs.as_asgi()),  # the collection, with a format
    path("status/<str:id>", DogStatus.as_asgi()),
    path("gadget/<str:id>", GadgetResource.as_asgi()),
    path("tag/<path:id>", TagResource.as_asgi()),
    path("stamped/<str:id>", StampedResource.as_asgi()),
    path("animal/<str:id>", AnimalResource.as_asgi()),
    path("animal/", AnimalResource.as_asgi()),
    path("slow-narrowed-dog/<str:id>", resources.SlowNarrowedDogs.as_asgi()),
    path("seed/notes/<str:id>", DogNotes.as_asgi()),
    path("seed/minimal/<str:id>", DogStatusMinimal.as_asgi()),
    path("seed/status/<str:id>", DogStatusSeed.as_asgi()),
    path("two-then-done/<str:id>", resources.TwoThenDone.as_asgi()),
    path("speaks-harper/<str:id>", resources.SpeaksHarper.as_asgi()),
    path("returns-generator/<str:id>", resources.ReturnsGenerator.as_asgi()),
    path("async-returns-stream/<str:id>", resources.AsyncReturnsStream.as_asgi()),
    path("returns-number/<str:id>", resources.ReturnsNumber.as_asgi()),
    path("fails-in-connect/<str:id>", resources.FailsInConnect.as_asgi()),
    path("fails-while-streaming/<str:id>", resources.FailsWhileStreaming.as_asgi()),
    path("closes-with-code/<str:id>", resources.ClosesWithCode.as_asgi()),
    path("raises-close/<str:id>", resources.RaisesCloseConnection.as_asgi()),
    path("listens-and-iterates/<str:id>", resources.ListensAndIterates.as_asgi()),
    path("close-callbacks/<str:id>", resources.CloseCallbacks.as_asgi()),
    path("generator-cleanup/<str:id>", resources.GeneratorCleanup.as_asgi()),
    path("publisher/<str:id>", resources.Publisher.as_asgi()),
    path("publisher/", resources.Publisher.as_asgi()),
    path("hears-publisher/<str:id>", resources.HearsPublisher.as_asgi()),
    path("plain-publisher/<str:id>", resources.PlainPublisher.as_asgi()),
    path("private-dog/<str:id>", resources.PrivateDogs.as_asgi()),
    path("private-dog/", resources.PrivateDogs.as_asgi()),
    path("members", resources.MembersOnly.as_asgi()),
    path("stuck-reader", resources.StuckReader.as_asgi()),
    path("iterates-late", resources.IteratesLate.as_asgi()),
    path("iterates-late-keeping", resources.IteratesLateKeeping.as_asgi()),
    path("generator-iterates-late", resources.GeneratorIteratesLate.as_asgi()),
    path("async-allow/<str:id>", resources.AsyncAllowRead.as_asgi()),
    path("young-dogs/", resources.YoungDogsOnly.as_asgi()),
    path("young-dogs/<str:id>", resources.YoungDogsOnly.as_asgi()),
    path("user/<str:id>", resources.Users.as_asgi()),
    path("dog-names/<str:id>", resources.DogNames.as_asgi()),
    path("dog-names/", resources.DogNames.as_asgi()),
    path("labelled-dog/<str:id>", resources.LabelledDogs.as_asgi()),
    path("counted-dog/<str:id>", resources.CountedDogs.as_asgi()),
]

application = ResourceAuthMiddlewareStack(ResourceRouter(websocket_urlpatterns))
