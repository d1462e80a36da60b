"""ASGI entry point: Django for its pages, the harper resources on their paths.

``resource_application`` serves the one route list of project/routing.py over
WebSocket (origin-checked) and HTTP (REST and event streams); every other HTTP path
goes to Django. Browsers authenticate with the session cookie, scripts with HTTP Basic
or a Bearer token.
"""

import os

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "project.settings")
django_application = get_asgi_application()

from harper_resources.routing import resource_application  # noqa: E402  (needs the app registry)
from project.routing import resource_urlpatterns  # noqa: E402

application = resource_application(resource_urlpatterns, http=django_application)
