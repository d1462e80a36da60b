"""ASGI callables that hand over the inner application's coroutine instead of awaiting it.

An ``async def`` middleware that awaits its inner application keeps a suspended frame
(and whatever its locals hold, such as a copy of the scope) for the life of every open
socket. The routing stack of this app (``Resource.as_asgi()``, ``ResourceRouter``, the
origin validator, the auth middleware without a login to await) is written as plain
``def``s that return the inner coroutine instead, wrapped with ``hands_over``.
"""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from asgiref.sync import markcoroutinefunction

F = TypeVar("F", bound=Callable[..., Awaitable[Any]])


def hands_over(call: F) -> F:
    """``call`` as an ASGI callable that behaves like an ``async def`` from outside:

    - it is marked as a coroutine function, so servers and asgiref see an ASGI 3 app;
    - an exception it raises comes out when the returned awaitable is awaited, not from
      the call (daphne calls and awaits separately: an error raised from the call left
      the handshake unanswered instead of answering 500)."""

    @functools.wraps(call)
    def handing_over(*args: Any, **kwargs: Any) -> Awaitable[Any]:
        try:
            return call(*args, **kwargs)
        except Exception as exc:
            return _raise(exc)

    return markcoroutinefunction(handing_over)  # type: ignore[return-value]


async def _raise(exc: Exception) -> Any:
    raise exc
