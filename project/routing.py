"""WebSocket routes of the demo: plain Channels routing."""

from django.urls import path

from project.dogs.resources import DogCollection, DogStatus

websocket_urlpatterns = [
    path("dog/<str:id>", DogStatus.as_asgi()),  # a record path: /dog/341
    path("dog/", DogCollection.as_asgi()),  # the collection path: every dog
]
