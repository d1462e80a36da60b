"""Bearer tokens: ``Authorization: Bearer <token>`` for scripts, without a password.

A token is Django-signed (``TimestampSigner``, salt ``harper_resources.token``, keyed
by ``SECRET_KEY``) and holds the user id, the lifetime in seconds and the fingerprint
of the user's password hash: it expires after that lifetime, and a password change (or
a new ``SECRET_KEY``) revokes every token issued before. ``manage.py resource_token
<username>`` prints one.
"""

from __future__ import annotations

from typing import Any

from django.core import signing

from .credentials import fingerprint

SALT = "harper_resources.token"

#: Lifetime (seconds) of a token when none is given.
DEFAULT_EXPIRES = 24 * 3600


def make_token(user: Any, expires: int = DEFAULT_EXPIRES) -> str:
    """A signed token for ``user``, valid for ``expires`` seconds."""
    payload = {"u": str(user.pk), "e": int(expires), "f": fingerprint(user)}
    return signing.TimestampSigner(salt=SALT).sign_object(payload, compress=False)


def read_token(token: str) -> tuple[str, str] | None:
    """``(user id, password fingerprint)`` of a genuine token that has not expired;
    None for anything else (no database access: the caller checks the user row)."""
    signer = signing.TimestampSigner(salt=SALT)
    try:
        payload = signer.unsign_object(token)
        if not isinstance(payload, dict):
            return None
        expires = payload.get("e")
        if isinstance(expires, bool) or not isinstance(expires, int) or expires < 0:
            return None
        signer.unsign_object(token, max_age=expires)
    except (signing.BadSignature, ValueError, TypeError):  # SignatureExpired is a BadSignature
        return None
    user_id, user_fingerprint = payload.get("u"), payload.get("f")
    if not isinstance(user_id, str) or not isinstance(user_fingerprint, str):
        return None
    return user_id, user_fingerprint
