"""Settings of the Channels arms (B: stock consumer, C: harper_resources)."""

import os

import dj_database_url

BASE = os.environ.get("BENCH_DIR", "/tmp")
SECRET_KEY = "benchmark-only"
DEBUG = False
ALLOWED_HOSTS = ["*"]
INSTALLED_APPS = [
    "django.contrib.contenttypes",
    "django.contrib.auth",
    "django.contrib.sessions",
    "channels",
    "harper_resources",
    "project.dogs",
]
# SQLite in BENCH_DIR unless DATABASE_URL names another database (PostgreSQL, say).
DATABASES = {
    "default": dj_database_url.config(default="sqlite:///" + os.path.join(BASE, "bench.sqlite3"), conn_max_age=600)
}
if DATABASES["default"]["ENGINE"].endswith("sqlite3"):
    # SQLite as it should run in production: WAL, and no fsync per commit (only at
    # checkpoints; a power cut may lose the last commits, never corrupt the file).
    # harper_resources adds a commit to every autocommit save (the version and the log
    # entry), so with the default journal each save would pay two fsyncs.
    DATABASES["default"]["OPTIONS"] = {"init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL"}
ROOT_URLCONF = "benchmarks.channels_app"
USE_TZ = True
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
ASGI_APPLICATION = "benchmarks.channels_app.application"
if os.environ.get("REDIS_URL"):
    if os.environ.get("BENCH_REDIS_LAYER") == "core":
        backend = "channels_redis.core.RedisChannelLayer"
        config = {"capacity": 100_000}
    else:
        backend, config = "channels_redis.pubsub.RedisPubSubChannelLayer", {}
    CHANNEL_LAYERS = {
        "default": {
            "BACKEND": backend,
            "CONFIG": {"hosts": [os.environ["REDIS_URL"]], "prefix": os.environ.get("BENCH_PREFIX", "bench"), **config},
        }
    }
else:
    CHANNEL_LAYERS = {"default": {"BACKEND": "channels.layers.InMemoryChannelLayer", "CONFIG": {"capacity": 100_000}}}
HARPER_RESOURCES_SEND_QUEUE_SIZE = 100_000
LOGGING = {"version": 1, "disable_existing_loggers": False, "root": {"level": "WARNING"}}
# BENCH_EAGER=0 turns eager sends off (harper_resources/eager.py), to compare.
HARPER_RESOURCES_EAGER_SEND = os.environ.get("BENCH_EAGER", "1") == "1"
