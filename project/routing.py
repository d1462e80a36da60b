"""Routes of the demo's resources: each path answers a WebSocket, REST and (where the
server has it) an event stream (see project/asgi.py)."""

from django.urls import path

from project.dogs.resources import DogCollection, DogStatus, Me
from project.dogs.seed_examples import DogNotes, DogStatusMinimal, DogStatusSeed

resource_urlpatterns = [
    path("dog/<str:id>", DogStatus.as_asgi()),  # a record path: /dog/341
    path("dog/", DogCollection.as_asgi()),  # the collection path: every dog
    path("me", Me.as_asgi()),  # who this socket is logged in as (needs a login)
    # The seed page's three server examples, as written there:
    path("notes/<str:id>", DogNotes.as_asgi()),
    path("status-minimal/<str:id>", DogStatusMinimal.as_asgi()),
    path("status/<str:id>", DogStatusSeed.as_asgi()),
]
#: The name of earlier releases, when the list served WebSockets only.
websocket_urlpatterns = resource_urlpatterns
