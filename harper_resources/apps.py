"""App configuration: signals, checks and resource discovery are wired in ``ready()``."""

from __future__ import annotations

from django.apps import AppConfig
from django.db import models
from django.db.models.signals import post_delete, post_migrate, post_save


class HarperResourcesConfig(AppConfig):
    name = "harper_resources"
    verbose_name = "Harper resources"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from . import checks, discovery, tables  # noqa: F401  (checks register themselves)

        # Import every app's resources.py and consumers.py so each process knows its
        # tables, also one that never loads the ASGI routing (a command, a script).
        discovery.autodiscover()
        tables.watch(connect_receivers)
        post_migrate.connect(install_capture, sender=self, dispatch_uid="harper_resources.capture")


def install_capture(using: str = "default", **kwargs: object) -> None:
    """After ``migrate``: (re)create the PostgreSQL capture triggers of the tables whose
    Resources ask for ``capture = "database"``."""
    from . import capture

    capture.install(using)


def connect_receivers(table: type[models.Model]) -> None:
    """Broadcast the saves and deletes of ``table`` and of the models inheriting from it.

    Only theirs: Django deletes a queryset in one query only when no ``post_delete``
    receiver listens to its model, so a receiver for every sender would make each
    ``delete()`` of the project load its rows first.
    """
    from . import broadcast, tables

    for model in tables.inheritors(table):
        post_save.connect(broadcast.on_post_save, sender=model, dispatch_uid="harper_resources.post_save")
        post_delete.connect(broadcast.on_post_delete, sender=model, dispatch_uid="harper_resources.post_delete")
