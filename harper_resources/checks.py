"""System checks for configuration a user can get wrong. Ids are stable:

- ``harper_resources.E001``: the channel layer alias is not configured.
- ``harper_resources.E002``: a Resource's ``model`` is not a concrete Django model.
- ``harper_resources.E003``: a ``HARPER_RESOURCES_*`` setting has a bad value.
- ``harper_resources.W001``: the layer would drop bursts on the hubs' channels (capacity).
- ``harper_resources.W004``: a model Resource is defined in a module that only a server
  imports (not an app's ``resources``/``consumers``), so other processes do not broadcast.
- ``harper_resources.W003``: a Resource's model has secret-looking fields and the
  resource does not say with ``fields`` what its ``value`` holds.
"""

from __future__ import annotations

import inspect
from typing import TYPE_CHECKING, Any

from django.conf import settings as django_settings
from django.core import checks
from django.db import models

from .conf import DEFAULTS, PREFIX, settings

if TYPE_CHECKING:
    from .consumers import Resource


@checks.register()
def check_channel_layer(app_configs: Any = None, **kwargs: Any) -> list[checks.CheckMessage]:
    alias = settings.CHANNEL_LAYER
    layers = getattr(django_settings, "CHANNEL_LAYERS", None) or {}
    if alias not in layers:
        return [
            checks.Error(
                f"CHANNEL_LAYERS has no {alias!r} alias, so record changes cannot reach any connection.",
                hint=(
                    'Add CHANNEL_LAYERS = {"default": {"BACKEND": "channels.layers.InMemoryChannelLayer"}} for one '
                    'process, or {"default": {"BACKEND": "channels_redis.pubsub.RedisPubSubChannelLayer", '
                    '"CONFIG": {"hosts": ["redis://127.0.0.1:6379/0"]}}} for several (pip install '
                    '"harper-resources[redis]"); or point HARPER_RESOURCES_CHANNEL_LAYER at an alias you have.'
                ),
                id="harper_resources.E001",
            )
        ]
    return []


def _all_resources() -> list[type[Resource]]:
    from .consumers import Resource

    found: list[type[Resource]] = []
    pending = list(Resource.__subclasses__())
    while pending:
        cls = pending.pop()
        found.append(cls)
        pending.extend(cls.__subclasses__())
    return found


@checks.register()
def check_resources(app_configs: Any = None, **kwargs: Any) -> list[checks.CheckMessage]:
    errors: list[checks.CheckMessage] = []
    for cls in _all_resources():
        model = cls.model
        if model is None:
            continue
        name = f"{cls.__module__}.{cls.__qualname__}"
        if not (isinstance(model, type) and issubclass(model, models.Model)) or model._meta.abstract:
            errors.append(
                checks.Error(
                    f"{name}.model is {model!r}, not a concrete Django model class.",
                    hint="Set model to a model class (class DogResource(Resource): model = Dog), or leave it "
                    "None for a plain resource.",
                    obj=cls,
                    id="harper_resources.E002",
                )
            )
    return errors


@checks.register()
def check_secret_fields(app_configs: Any = None, **kwargs: Any) -> list[checks.CheckMessage]:
    from . import tables

    warnings: list[checks.CheckMessage] = []
    for cls in _all_resources():
        model = cls.model
        if not (isinstance(model, type) and issubclass(model, models.Model)) or model._meta.abstract:
            continue
        secrets = [name for name in tables.secret_fields(model) if name not in cls.exclude]
        if cls.fields is not None or not secrets:
            continue
        warnings.append(
            checks.Warning(
                f"{cls.__module__}.{cls.__qualname__} streams {model._meta.label}, which has fields that look like "
                f"secrets ({', '.join(secrets)}); they are left out of value, but every other field is sent.",
                hint='Say what value holds: fields = ("id", "username", ...) on the resource.',
                obj=cls,
                id="harper_resources.W003",
            )
        )
    return warnings


_POSITIVE_INTS = (
    "COLLECTION_LIMIT",
    "MAX_MESSAGE_BYTES",
    "SEND_QUEUE_SIZE",
    "SEND_QUEUE_BYTES",
    "RECEIVE_QUEUE_SIZE",
    "BROADCAST_QUEUE_SIZE",
    "LOG_MAX_CHANGES",
    "PUBLISH_QUEUE_SIZE",
    "MESSAGE_BURST",
    "PASSWORD_HASH_THREADS",
    "WRITE_THREADS",
)


@checks.register()
def check_settings(app_configs: Any = None, **kwargs: Any) -> list[checks.CheckMessage]:
    errors: list[checks.CheckMessage] = []
    for name in _POSITIVE_INTS:
        value = getattr(settings, name)
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            errors.append(_bad_setting(name, value, "a whole number of at least 1"))
    rate = settings.MESSAGE_RATE
    if isinstance(rate, bool) or not isinstance(rate, (int, float)) or not rate > 0:
        errors.append(_bad_setting("MESSAGE_RATE", rate, "a number of messages a second, more than 0"))
    keepalive = settings.SSE_KEEPALIVE
    if isinstance(keepalive, bool) or not isinstance(keepalive, (int, float)) or not keepalive > 0:
        errors.append(_bad_setting("SSE_KEEPALIVE", keepalive, "a number of seconds, more than 0"))
    for name in ("EXIT_FLUSH_TIMEOUT", "LOG_RETENTION", "REPLAY_INTERVAL", "AUTH_CACHE_SECONDS", "REAUTH_INTERVAL"):
        seconds = getattr(settings, name)
        if isinstance(seconds, bool) or not isinstance(seconds, (int, float)) or seconds < 0:
            errors.append(_bad_setting(name, seconds, "a number of seconds, 0 or more"))
    if not isinstance(settings.EAGER_SEND, bool):
        errors.append(_bad_setting("EAGER_SEND", settings.EAGER_SEND, "True or False"))
    if not isinstance(settings.CHANNEL_LAYER, str):
        errors.append(_bad_setting("CHANNEL_LAYER", settings.CHANNEL_LAYER, "an alias of CHANNEL_LAYERS (text)"))
    return errors


def _bad_setting(name: str, value: Any, expected: str) -> checks.Error:
    return checks.Error(
        f"{PREFIX}{name} is {value!r}; it must be {expected}.",
        hint=f"Remove it to use the default ({DEFAULTS[name]!r}) or set {expected}.",
        id="harper_resources.E003",
    )


@checks.register()
def check_capture(app_configs: Any = None, **kwargs: Any) -> list[checks.CheckMessage]:
    from django.db import DEFAULT_DB_ALIAS, connections

    from . import capture, tables

    wanted = sorted(model._meta.label for model in tables.captured_tables())
    if not wanted or capture.supported(DEFAULT_DB_ALIAS):
        return []
    vendor = connections[DEFAULT_DB_ALIAS].vendor
    return [
        checks.Warning(
            f'Resources of {", ".join(wanted)} ask for capture = "database", which needs PostgreSQL; on {vendor} '
            "only save() and delete() are broadcast: QuerySet.update(), bulk_create(), bulk_update(), "
            "QuerySet.delete() without signals and raw SQL are not.",
            hint="Call harper_resources.broadcast_rows(Model, pks) after such changes, or use PostgreSQL.",
            id="harper_resources.W002",
        )
    ]


#: A hub channel carries every change its process serves; below this a burst is dropped.
MIN_HUB_CAPACITY = 1000


@checks.register()
def check_hub_capacity(app_configs: Any = None, **kwargs: Any) -> list[checks.CheckMessage]:
    from .hub import HUB_CHANNEL_PREFIX, channel_layer, is_process_local

    try:
        layer = channel_layer()
    except Exception:
        return []  # E001 or the layer's own error says what is wrong
    # Static look-ups: the pub/sub layer proxies attributes to a per-event-loop object.
    if layer is None or is_process_local(layer) or inspect.getattr_static(layer, "get_capacity", None) is None:
        return []  # in-memory delivery skips the layer
    if inspect.getattr_static(layer, "group_expiry", None) is None:
        return []  # the pub/sub layer queues without a bound
    capacity = layer.get_capacity(HUB_CHANNEL_PREFIX + "example!x")
    if capacity >= MIN_HUB_CAPACITY:
        return []
    return [
        checks.Warning(
            f"The channel layer {settings.CHANNEL_LAYER!r} holds at most {capacity} messages per hub channel; "
            "a burst of more changes than that is dropped by the layer.",
            hint=f'Add "channel_capacity": {{"{HUB_CHANNEL_PREFIX}*": 100000}} to its CONFIG.',
            id="harper_resources.W001",
        )
    ]


@checks.register()
def check_resource_modules(app_configs: Any = None, **kwargs: Any) -> list[checks.CheckMessage]:
    """W004: model Resources that processes other than servers never import. The ASGI
    application's module is imported first, so Resources defined in routing are seen."""
    from django.utils.module_loading import import_string

    from . import discovery

    module = discovery.asgi_module()
    if module is not None:
        try:
            import_string(django_settings.ASGI_APPLICATION)
        except Exception:
            pass  # the server reports it; this check needs only what loads
    warnings: list[checks.CheckMessage] = []
    for cls in _all_resources():
        model = cls.model
        if not (isinstance(model, type) and issubclass(model, models.Model)) or model._meta.abstract:
            continue
        if discovery.registered_at_start(model):
            continue
        app = model._meta.app_label
        warnings.append(
            checks.Warning(
                f"{cls.__module__}.{cls.__qualname__} streams {model._meta.label}, but {cls.__module__} is not "
                "imported by processes other than the server: saves in manage.py shell, commands, workers and "
                "scripts are not broadcast at once.",
                hint=f"Define the resource in {app}/resources.py or {app}/consumers.py (imported at start-up by "
                "every process) and import it into your routing from there.",
                obj=cls,
                id="harper_resources.W004",
            )
        )
    return warnings
