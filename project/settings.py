"""Settings of the demo project.

Environment: ``DATABASE_URL`` selects the database (SQLite file db.sqlite3 by default),
``REDIS_URL`` switches the channel layer to channels-redis (in-memory by default, which
serves one process; ``REDIS_LAYER=core`` and ``REDIS_PREFIX`` tune it),
``DJANGO_SECRET_KEY`` and ``DJANGO_DEBUG`` do what they say.
"""

import os
from pathlib import Path

import dj_database_url

BASE_DIR = Path(__file__).resolve().parent.parent

SECRET_KEY = os.environ.get("DJANGO_SECRET_KEY", "demo-only-insecure-key-do-not-deploy")
DEBUG = os.environ.get("DJANGO_DEBUG", "1") == "1"
ALLOWED_HOSTS = ["127.0.0.1", "localhost", "[::1]"]

INSTALLED_APPS = [
    "daphne",
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "channels",
    "harper_resources",
    "project.dogs",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

ROOT_URLCONF = "project.urls"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

WSGI_APPLICATION = None
ASGI_APPLICATION = "project.asgi.application"
# What daphne's runserver (manage.py rundemo) allows per WebSocket message and frame:
# daphne's defaults, stated so they are never raised unseen (docs/deployment.md).
DAPHNE_WEBSOCKET_MAX_MESSAGE_SIZE = 1024 * 1024
DAPHNE_WEBSOCKET_MAX_FRAME_SIZE = 1024 * 1024

DATABASES = {
    "default": dj_database_url.config(default=f"sqlite:///{BASE_DIR / 'db.sqlite3'}", conn_max_age=0),
}

REDIS_URL = os.environ.get("REDIS_URL")
# Key prefix in Redis, so several projects (or test runs) can share one Redis.
REDIS_PREFIX = os.environ.get("REDIS_PREFIX", "asgi")
if REDIS_URL:
    # Several processes: channels-redis. The pub/sub layer by default (see the README,
    # "Running several processes", for why); REDIS_LAYER=core picks RedisChannelLayer.
    if os.environ.get("REDIS_LAYER", "pubsub") == "core":
        CHANNEL_LAYERS = {
            "default": {
                "BACKEND": "channels_redis.core.RedisChannelLayer",
                # The hub channel of each process carries every change it serves: give
                # it room for bursts (channels-redis drops past capacity, default 100).
                "CONFIG": {
                    "hosts": [REDIS_URL],
                    "prefix": REDIS_PREFIX,
                    "channel_capacity": {"harper-hub.*": 100_000},
                },
            }
        }
    else:
        CHANNEL_LAYERS = {
            "default": {
                "BACKEND": "channels_redis.pubsub.RedisPubSubChannelLayer",
                "CONFIG": {"hosts": [REDIS_URL], "prefix": REDIS_PREFIX},
            }
        }
else:
    CHANNEL_LAYERS = {"default": {"BACKEND": "channels.layers.InMemoryChannelLayer"}}

# HARPER_RESOURCES_<NAME> in the environment overrides that setting (numbers only), so
# the demo can be tuned without editing this file.
for _name, _value in os.environ.items():
    if _name.startswith("HARPER_RESOURCES_") and _name != "HARPER_RESOURCES_CHANNEL_LAYER":
        globals()[_name] = float(_value) if "." in _value else int(_value)

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
]

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"console": {"class": "logging.StreamHandler"}},
    "loggers": {"harper_resources": {"handlers": ["console"], "level": "INFO"}},
}
