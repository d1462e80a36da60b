"""System checks catch the misconfigurations a user can make, with stable ids."""

from __future__ import annotations

from django.core import checks
from django.test import override_settings

from harper_resources import Resource
from harper_resources.checks import check_channel_layer, check_resources, check_settings


def ids(messages):
    return [message.id for message in messages]


def test_the_demo_configuration_passes_every_check():
    from tests.resources import Users

    # tests.resources.Users is there to be warned about (W003, in tests/test_fields.py).
    assert [message for message in checks.run_checks() if message.obj is not Users] == []


@override_settings(CHANNEL_LAYERS={})
def test_a_missing_channel_layer_is_error_E001_with_a_hint():
    (error,) = check_channel_layer()
    assert error.id == "harper_resources.E001"
    assert "CHANNEL_LAYERS" in error.msg and "InMemoryChannelLayer" in error.hint


def test_the_redis_layer_E001_suggests_passes_the_capacity_check_W001(redis_service):
    """E001's hint and the README recommend the same layer, and taking it as written
    raises no other warning."""
    import ast
    import re

    from harper_resources.checks import check_hub_capacity
    from tests.conftest import use_layers

    with override_settings(CHANNEL_LAYERS={}):
        (error,) = check_channel_layer()
    suggested = re.search(r'(\{"default": \{"BACKEND": "channels_redis[^\n]*?\}\}\})', error.hint)
    assert suggested, error.hint
    layers = ast.literal_eval(suggested.group(1))
    assert layers["default"]["BACKEND"] == "channels_redis.pubsub.RedisPubSubChannelLayer"
    layers["default"]["CONFIG"]["hosts"] = [redis_service]
    with use_layers(layers):
        assert check_hub_capacity() == []


@override_settings(HARPER_RESOURCES_CHANNEL_LAYER="events")
def test_pointing_at_an_alias_that_does_not_exist_is_E001():
    assert ids(check_channel_layer()) == ["harper_resources.E001"]


def test_a_resource_whose_model_is_not_a_model_is_E002():
    class Broken(Resource):
        model = "dogs.Dog"  # a string, not the class

    try:
        errors = [e for e in check_resources() if e.obj is Broken]
        assert ids(errors) == ["harper_resources.E002"]
        assert "not a concrete Django model" in errors[0].msg
    finally:
        Broken.model = None  # keep later checks quiet


@override_settings(HARPER_RESOURCES_COLLECTION_LIMIT=0, HARPER_RESOURCES_MAX_MESSAGE_BYTES="1MB")
def test_bad_setting_values_are_E003_naming_the_setting():
    errors = check_settings()
    assert ids(errors) == ["harper_resources.E003", "harper_resources.E003"]
    assert "HARPER_RESOURCES_COLLECTION_LIMIT" in errors[0].msg
    assert "HARPER_RESOURCES_MAX_MESSAGE_BYTES" in errors[1].msg


def test_a_redis_layer_with_the_default_capacity_is_warned_about_as_W001(redis_service):
    from harper_resources.checks import check_hub_capacity
    from tests.conftest import redis_layer_settings, use_layers

    with use_layers(redis_layer_settings("redis")):
        (warning,) = check_hub_capacity()
    assert warning.id == "harper_resources.W001"
    assert "channel_capacity" in warning.hint
    with use_layers(redis_layer_settings("redis", channel_capacity={"harper-hub.*": 100_000})):
        assert check_hub_capacity() == []
    with use_layers(redis_layer_settings("redis-pubsub")):
        assert check_hub_capacity() == []


@override_settings(
    HARPER_RESOURCES_MESSAGE_RATE=0,
    HARPER_RESOURCES_MESSAGE_BURST=2.5,
    HARPER_RESOURCES_PUBLISH_QUEUE_SIZE="100",
    HARPER_RESOURCES_SEND_QUEUE_BYTES=-1,
)
def test_the_client_flood_limits_are_checked_as_E003():
    errors = check_settings()
    assert ids(errors) == ["harper_resources.E003"] * 4
    named = " ".join(error.msg for error in errors)
    for name in ("MESSAGE_RATE", "MESSAGE_BURST", "PUBLISH_QUEUE_SIZE", "SEND_QUEUE_BYTES"):
        assert f"HARPER_RESOURCES_{name} " in named


@override_settings(
    HARPER_RESOURCES_AUTH_CACHE_SECONDS=-1,
    HARPER_RESOURCES_PASSWORD_HASH_THREADS=0,
    HARPER_RESOURCES_REAUTH_INTERVAL="5",
)
def test_the_auth_settings_are_checked_as_E003():
    errors = check_settings()
    assert ids(errors) == ["harper_resources.E003"] * 3
    named = " ".join(error.msg for error in errors)
    for name in ("AUTH_CACHE_SECONDS", "PASSWORD_HASH_THREADS", "REAUTH_INTERVAL"):
        assert f"HARPER_RESOURCES_{name} " in named


@override_settings(HARPER_RESOURCES_WRITE_THREADS=0)
def test_the_rest_write_threads_are_checked_as_E003():
    errors = check_settings()
    assert ids(errors) == ["harper_resources.E003"]
    assert "HARPER_RESOURCES_WRITE_THREADS " in errors[0].msg


@override_settings(HARPER_RESOURCES_EAGER_SEND="no")
def test_eager_send_must_be_a_boolean():
    errors = check_settings()
    assert ids(errors) == ["harper_resources.E003"]
    assert "HARPER_RESOURCES_EAGER_SEND" in errors[0].msg
