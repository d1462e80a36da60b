"""ASGI entry point: Django for HTTP, the harper resources for WebSockets.

Browsers authenticate with the session cookie, scripts with HTTP Basic
(ResourceAuthMiddlewareStack); a browser's Origin must be one of ALLOWED_HOSTS, so another
site cannot open a socket with a visitor's cookies.
"""

import os

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "project.settings")
django_application = get_asgi_application()

from channels.routing import ProtocolTypeRouter  # noqa: E402  (needs the app registry)

from harper_resources.auth import OriginValidator, ResourceAuthMiddlewareStack  # noqa: E402
from harper_resources.routing import ResourceRouter  # noqa: E402
from harper_resources.servers import bound_daphne_pongs  # noqa: E402
from project.routing import websocket_urlpatterns  # noqa: E402

bound_daphne_pongs()  # daphne stops reading a client that floods pings and never reads

application = ProtocolTypeRouter(
    {
        "http": django_application,
        "websocket": OriginValidator(ResourceAuthMiddlewareStack(ResourceRouter(websocket_urlpatterns))),
    }
)
