"""harper_resources: Harper-style real-time resources for Django.

Public names: ``Resource`` (the WebSocket resource base class), ``publish`` (send a
``message`` frame to a record's subscribers from sync code), ``broadcast_rows`` (send
the rows a bulk operation changed, where the database does not capture them) and
``__version__``.
They are imported lazily so that importing this package never touches the app
registry before Django is set up.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"
__all__ = ["Resource", "__version__", "broadcast_rows", "publish"]

if TYPE_CHECKING:
    from .broadcast import broadcast_rows, publish
    from .consumers import Resource


def __getattr__(name: str) -> Any:
    if name == "Resource":
        from .consumers import Resource

        return Resource
    if name in ("publish", "broadcast_rows"):
        from . import broadcast

        return getattr(broadcast, name)
    raise AttributeError(f"module 'harper_resources' has no attribute {name!r}")
