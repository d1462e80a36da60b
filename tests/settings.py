"""Test settings: the demo's, with the in-memory layer unless a test asks for Redis,
plus a test app whose models have unusual primary keys and field types."""

from project.settings import *  # noqa: F403

INSTALLED_APPS = [*INSTALLED_APPS, "tests.testapp"]  # noqa: F405
CHANNEL_LAYERS = {"default": {"BACKEND": "channels.layers.InMemoryChannelLayer"}}
PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "loggers": {"harper_resources": {"level": "INFO"}},
}

# The test database is a file, as in production: readers and writers in several threads
# then wait for each other (busy timeout) instead of failing with "table is locked", as
# SQLite's shared in-memory database does.
if DATABASES["default"]["ENGINE"].endswith("sqlite3"):  # noqa: F405
    DATABASES["default"]["TEST"] = {"NAME": str(BASE_DIR / ".test-db.sqlite3")}  # noqa: F405
