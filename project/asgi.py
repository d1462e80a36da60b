"""ASGI entry point: Django for HTTP, the harper resources for WebSockets.

Browsers authenticate with the session cookie (AuthMiddlewareStack); origins are checked
against ALLOWED_HOSTS, so another site cannot open a socket with a visitor's cookies.
"""

import os

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "project.settings")
django_application = get_asgi_application()

from channels.auth import AuthMiddlewareStack  # noqa: E402  (needs the app registry)
from channels.routing import ProtocolTypeRouter  # noqa: E402
from channels.security.websocket import AllowedHostsOriginValidator  # noqa: E402

from harper_resources.routing import ResourceRouter  # noqa: E402
from project.routing import websocket_urlpatterns  # noqa: E402

application = ProtocolTypeRouter(
    {
        "http": django_application,
        "websocket": AllowedHostsOriginValidator(AuthMiddlewareStack(ResourceRouter(websocket_urlpatterns))),
    }
)
