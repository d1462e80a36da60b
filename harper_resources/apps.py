"""App configuration: signals, checks and resource discovery are wired in ``ready()``."""

from __future__ import annotations

from django.apps import AppConfig
from django.db.models.signals import post_delete, post_save
from django.utils.module_loading import autodiscover_modules


class HarperResourcesConfig(AppConfig):
    name = "harper_resources"
    verbose_name = "Harper resources"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from . import broadcast, checks  # noqa: F401  (checks register themselves)

        # Import every app's resources.py so each process knows its tables, also one
        # that never loads the ASGI routing (a management command, a script).
        autodiscover_modules("resources")
        post_save.connect(broadcast.on_post_save, dispatch_uid="harper_resources.post_save")
        post_delete.connect(broadcast.on_post_delete, dispatch_uid="harper_resources.post_delete")
