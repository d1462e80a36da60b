"""How a connection ends: the close frame every server can send, and the refusal log line.

The close code rule, in one place. The standard code is sent first. A server that
cannot send it refuses by raising from ``send`` before anything reaches the socket:
daphne (through autobahn) sends only 1000 and 3000-4999, and raises for 1008, 1009,
1011 and 1013. The connection then closes with ``fallback(code)``, 4000 + (code - 1000):
4008, 4009, 4011, 4013. Uvicorn sends the standard codes. So a client always gets a
close code, never a silent socket that stays open.
"""

from __future__ import annotations

import logging
from typing import Any

from .auth import AUTH_FAILED
from .streams import Send

logger = logging.getLogger("harper_resources")


def fallback(code: int) -> int | None:
    """The code sent where a server refuses ``code``: 4000 + (code - 1000) for the
    protocol's codes 1001-1999; None for 1000 and the application codes (3000-4999),
    which every server sends."""
    if 1000 < code < 2000:
        return code + 3000
    return None


async def close(send: Send, code: int, reason: str) -> None:
    """Send the close frame: ``code``, or ``fallback(code)`` if the server refuses it.
    Returns quietly when the client is gone already (nobody to tell)."""
    try:
        await send({"type": "websocket.close", "code": code, "reason": reason})
        return
    except Exception:
        alternative = fallback(code)
        if alternative is None:
            return
    try:
        await send({"type": "websocket.close", "code": alternative, "reason": reason})
    except Exception:
        pass


def log_refusal(scope: dict[str, Any], user: Any, code: int) -> None:
    """Log at INFO that a connection was closed before its first frame: the path (never
    the query string: it may hold a token), the user id or anonymous, the code. Never
    credentials: wrong ones are only said to have been refused."""
    if scope.get(AUTH_FAILED):
        who = "anonymous (credentials refused)"
    elif user is not None and getattr(user, "is_authenticated", False):
        who = f"user {user.pk}"
    else:
        who = "anonymous"
    logger.info("harper_resources: refused %s for %s: close %d", scope.get("path"), who, code)


def log_revocation(scope: dict[str, Any], user: Any, code: int) -> None:
    """Log at INFO that an open connection was closed because its user lost access."""
    logger.info("harper_resources: closed %s for user %s, who lost access: close %d", scope.get("path"), user.pk, code)
