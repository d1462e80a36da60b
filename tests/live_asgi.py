"""The demo's ASGI application plus a few test-only routes, for live-server tests of
close paths the demo has no resource for (``DemoServer(..., application=...)``).

The demo's own routes come first and behave as in ``project.asgi``.
"""

from project import asgi

demo_application = asgi.application  # Django is set up from here on

from django.urls import path  # noqa: E402

from harper_resources.routing import resource_application  # noqa: E402
from project.routing import resource_urlpatterns as demo_routes  # noqa: E402
from tests import resources  # noqa: E402

resource_urlpatterns = [
    *demo_routes,
    path("private-dog/<str:id>", resources.PrivateDogs.as_asgi()),  # needs the view permission: 3003
    path("returns-number/<str:id>", resources.ReturnsNumber.as_asgi()),  # connect() not iterable: 1011
    path("raises-close/<str:id>", resources.RaisesCloseConnection.as_asgi(code=1011)),  # 1011 from the stream
    path("stuck-reader", resources.StuckReader.as_asgi()),  # reads one message, then none: 1008
    path("closes-itself/<str:id>", resources.ClosesItself.as_asgi()),  # Channels' self.close(1011)
]

application = resource_application(resource_urlpatterns, http=asgi.django_application)
