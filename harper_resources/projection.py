"""What a resource's ``value`` holds: its ``fields``, ``exclude`` and ``serialize``.

Every ``put`` of a table carries the table's canonical value (``tables.record_value``,
or the capture trigger), encoded once per change and shared by every subscriber. A
resource that narrows or reshapes it gets a ``Projection`` in its stream, applied after
``allow_record`` (which sees the canonical value). The projected frame is kept on the
shared ``Frame``, per resource class: a change is re-encoded at most once per resource
class per process, however many connections subscribe.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from django.db import models

from . import metrics, protocol, tables
from .streams import Frame

Serialize = Callable[[dict[str, Any]], dict[str, Any]]


class Projection:
    """Turns a canonical ``put`` into the one a resource class sends: only ``fields`` (if
    given), without ``exclude`` and without secret-looking fields it does not list, then
    through ``serialize``. ``delete``, ``message`` and other frames pass as they are.

    ``key`` names the cache slot on each ``Frame`` (the resource class): every
    projection with the same key must produce the same frames.
    """

    __slots__ = ("drop", "keep", "key", "serialize")

    def __init__(
        self,
        key: object,
        model: type[models.Model],
        fields: Sequence[str] | None,
        exclude: Sequence[str],
        serialize: Serialize | None,
    ) -> None:
        self.key = key
        self.keep = None if fields is None else frozenset(fields)
        # Secret-looking fields are dropped even when the canonical value has them (some
        # other resource of the table listed them, or a change logged before they were
        # hidden), unless this resource lists them itself.
        self.drop = frozenset(exclude) | frozenset(tables.secret_fields(model))
        self.serialize = serialize

    def value(self, value: dict[str, Any]) -> dict[str, Any]:
        """The ``value`` this resource sends for the canonical ``value``."""
        if self.keep is not None:
            value = {name: item for name, item in value.items() if name in self.keep}
        else:
            value = {name: item for name, item in value.items() if name not in self.drop}
        return value if self.serialize is None else self.serialize(value)

    def __call__(self, frame: Frame) -> Frame | None:
        views = frame._views
        if views is not None and self.key in views:
            return views[self.key]
        projected = self._project(frame)
        if frame._views is None:
            frame._views = {}
        frame._views[self.key] = projected
        return projected

    def _project(self, frame: Frame) -> Frame | None:
        if frame.record is None:  # a message or a reset: no record value
            return frame
        data = frame.data
        value = data.get("value")
        if data.get("type") != protocol.PUT or not isinstance(value, dict):
            return frame
        try:
            projected = self.value(value)
            if self.serialize is None and len(projected) == len(value):
                return frame  # nothing to leave out: the canonical frame as it is
            text = protocol.encode({**data, "value": projected})
        except Exception:
            metrics.throttled_error(
                "serialize_failed",
                "harper_resources: serializing a record for %r failed; the frame is not sent",
                self.key,
                exc_info=True,
            )
            return None
        return Frame(text, frame.record, frame.version)
