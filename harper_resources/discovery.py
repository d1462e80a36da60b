"""Where Resources are found, and which process serves them.

Every process that loads the project (a server, ``manage.py shell``, a worker, a
script) imports each installed app's ``resources`` and ``consumers`` modules when the
app registry is ready, so a Resource defined in either registers its model in every
process, and saves there are broadcast. ``routing`` modules are not imported: an app's
``routing.py`` imports its consumers anyway, and the project's routing and ``asgi.py``
are for servers only. A model Resource defined where only a server looks (the project's
routing, ``asgi.py``) is warned about by system check ``harper_resources.W004``.

A process-local layer (``InMemoryChannelLayer``) reaches only its own process: a save
in a process that serves no WebSockets is logged once per process (and counted as
``local_layer_outside_server``), saying how, or whether, the change reaches a server.
"""

from __future__ import annotations

import logging
import sys
import threading
from collections.abc import Iterable

from django.db import models
from django.utils.module_loading import autodiscover_modules

from . import hub, metrics, tables
from .conf import settings

logger = logging.getLogger("harper_resources")

#: The modules of every installed app imported at start-up.
DISCOVERED_MODULES = ("resources", "consumers")

_tables_at_start: set[type[models.Model]] | None = None
_warned: set[str] = set()
_warned_lock = threading.Lock()


def autodiscover() -> None:
    """Import every installed app's ``DISCOVERED_MODULES`` and remember the tables they
    registered: what a process that never loads the ASGI application broadcasts."""
    global _tables_at_start
    autodiscover_modules(*DISCOVERED_MODULES)
    _tables_at_start = tables.registered()


def registered_at_start(model: type[models.Model]) -> bool:
    """True if ``model``'s table was registered when the app registry became ready (so in
    every process), or if discovery has not run (the app is not installed)."""
    if _tables_at_start is None:
        return True
    return (model._meta.concrete_model or model) in _tables_at_start


def asgi_module() -> str | None:
    """The module of ``settings.ASGI_APPLICATION`` (``"project.asgi"``), if set."""
    from django.conf import settings as django_settings

    path = getattr(django_settings, "ASGI_APPLICATION", None)
    if not isinstance(path, str) or "." not in path:
        return None
    return path.rpartition(".")[0]


def is_server_process() -> bool:
    """True if this process serves WebSockets: a hub is running here, or the module of
    ``ASGI_APPLICATION`` was imported (a server with no client yet)."""
    if hub.running_hubs():
        return True
    module = asgi_module()
    return module is not None and module in sys.modules


def warn_if_unreachable(groups: Iterable[str], *, message: bool) -> None:
    """Called for a frame handed to a process-local layer: log once per process (and
    count each time) when no server can get it from here at once."""
    if is_server_process():
        return
    metrics.count("local_layer_outside_server")
    kind = "message" if message else "change"
    with _warned_lock:
        if kind in _warned:
            return
        _warned.add(kind)
    where = ", ".join(groups)
    layer = f"the channel layer {settings.CHANNEL_LAYER!r} is process-local (InMemoryChannelLayer)"
    fix = (
        "For delivery across processes at once, use channels-redis "
        "(channels_redis.pubsub.RedisPubSubChannelLayer; see the README's setup)."
    )
    interval = settings.REPLAY_INTERVAL
    if message:
        logger.warning(
            "harper_resources: a message was published (%s) in a process that serves no WebSockets, and %s: "
            "no client receives it (published messages are not in the change log). %s Logged once per process.",
            where,
            layer,
            fix,
        )
    elif interval:
        logger.warning(
            "harper_resources: a change was saved (%s) in a process that serves no WebSockets, and %s: "
            "servers on the same database receive it from the change log within about %s s "
            "(HARPER_RESOURCES_REPLAY_INTERVAL), not at once. %s Logged once per process.",
            where,
            layer,
            interval,
            fix,
        )
    else:
        logger.warning(
            "harper_resources: a change was saved (%s) in a process that serves no WebSockets, and %s; "
            "HARPER_RESOURCES_REPLAY_INTERVAL = 0 turns off the change-log replay, so no client receives it. "
            "%s Logged once per process.",
            where,
            layer,
            fix,
        )
