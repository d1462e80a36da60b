"""A password hasher that counts its checks and can be made slow, for auth tests."""

from __future__ import annotations

import threading
import time

from django.contrib.auth.hashers import MD5PasswordHasher


class CountingHasher(MD5PasswordHasher):
    """MD5, under a name of its own, counting ``verify`` calls and sleeping ``delay``
    seconds in each (as a real hasher's work factor would)."""

    algorithm = "counting_md5"
    delay = 0.0
    verified = 0
    _lock = threading.Lock()

    def verify(self, password: str, encoded: str) -> bool:
        with self._lock:
            type(self).verified += 1
        time.sleep(self.delay)
        return super().verify(password, encoded)

    def encode(self, password: str, salt: str) -> str:
        time.sleep(self.delay)
        return super().encode(password, salt)


SETTINGS = ["tests.hashers.CountingHasher", "django.contrib.auth.hashers.MD5PasswordHasher"]
