"""Where Resources are found (W004), and the warning for saves a process-local layer
cannot carry to a server. Across real processes: tests/test_fresh_project.py."""

from __future__ import annotations

import logging

import pytest
from django.contrib.auth.models import User
from django.test import override_settings

from harper_resources import Resource, discovery, metrics
from harper_resources.checks import check_resource_modules
from project.dogs.models import Dog

IN_MEMORY = {"default": {"BACKEND": "channels.layers.InMemoryChannelLayer"}}


def test_apps_resources_and_consumers_modules_are_imported_at_start():
    assert discovery.DISCOVERED_MODULES == ("resources", "consumers")
    # project/dogs/resources.py and tests/testapp/resources.py were imported by ready().
    from tests.testapp.models import Gadget

    assert discovery.registered_at_start(Dog) and discovery.registered_at_start(Gadget)


def test_the_demos_resources_pass_the_module_check():
    assert [w for w in check_resource_modules() if w.obj.__module__.startswith("project.")] == []


def test_a_model_resource_only_a_server_imports_is_warned_about_as_W004():
    class ServerOnlyUsers(Resource):  # as if in the project's routing.py or asgi.py
        model = User
        fields = ("id", "username")

    (warning,) = [w for w in check_resource_modules() if w.obj is ServerOnlyUsers]
    assert warning.id == "harper_resources.W004"
    assert "auth.User" in warning.msg and "manage.py shell" in warning.msg
    assert "auth/resources.py or auth/consumers.py" in warning.hint


@pytest.fixture
def outside_a_server(monkeypatch):
    """This process as ``manage.py shell`` sees it: no hub, no ASGI module imported,
    nothing warned yet; the in-memory layer."""
    from channels.layers import channel_layers

    monkeypatch.setattr(discovery, "_warned", set())
    monkeypatch.setattr(discovery, "asgi_module", lambda: "not_an_imported_module.asgi")
    with override_settings(CHANNEL_LAYERS=IN_MEMORY):
        channel_layers.backends.clear()
        yield
    channel_layers.backends.clear()


def warnings_of(caplog):
    return [r.getMessage() for r in caplog.records if "serves no WebSockets" in r.getMessage()]


@pytest.mark.django_db(transaction=True)
def test_saves_outside_a_server_on_the_in_memory_layer_are_warned_about_once(outside_a_server, caplog):
    before = metrics.snapshot().get("local_layer_outside_server", 0)
    with caplog.at_level(logging.WARNING, logger="harper_resources"):
        rex = Dog.objects.create(name="Rex")
        rex.age = 4
        rex.save()
        Dog.objects.create(name="Luna")
    (message,) = warnings_of(caplog)
    assert "change log within about 1.0 s" in message and "RedisPubSubChannelLayer" in message
    assert metrics.snapshot()["local_layer_outside_server"] - before == 3


@pytest.mark.django_db(transaction=True)
@override_settings(HARPER_RESOURCES_REPLAY_INTERVAL=0)
def test_without_the_log_replay_the_warning_says_no_client_receives_the_change(outside_a_server, caplog):
    with caplog.at_level(logging.WARNING, logger="harper_resources"):
        Dog.objects.create(name="Rex")
    (message,) = warnings_of(caplog)
    assert "no client receives it" in message


@pytest.mark.django_db(transaction=True)
def test_a_published_message_outside_a_server_is_warned_about_as_lost(outside_a_server, caplog):
    from harper_resources import publish

    rex = Dog.objects.create(name="Rex")
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="harper_resources"):
        publish(Dog, rex.pk, {"hello": 1})
        publish(Dog, rex.pk, {"hello": 2})
    (message,) = warnings_of(caplog)
    assert "message was published" in message and "no client receives it" in message


@pytest.mark.django_db(transaction=True)
def test_a_server_process_is_not_warned(monkeypatch, caplog):
    """With the ASGI application's module imported (daphne, uvicorn, runserver) the
    process is a server, clients connected or not."""
    import sys
    import types

    monkeypatch.setattr(discovery, "_warned", set())
    monkeypatch.setattr(discovery, "asgi_module", lambda: "served_project.asgi")
    monkeypatch.setitem(sys.modules, "served_project.asgi", types.ModuleType("served_project.asgi"))
    with override_settings(CHANNEL_LAYERS=IN_MEMORY), caplog.at_level(logging.WARNING, logger="harper_resources"):
        Dog.objects.create(name="Rex")
    assert warnings_of(caplog) == []
