"""After-commit broadcasting from sync code: what is sent, when, and that saving never
depends on it."""

from __future__ import annotations

import json
import logging

import pytest
from django.db import transaction
from django.test import override_settings

from harper_resources import broadcast, metrics, protocol, tables
from project.dogs.models import Dog
from tests.layers import RecordingLayer
from tests.testapp.models import Unwatched

RECORDING = {"default": {"BACKEND": "tests.layers.RecordingLayer"}}
BROKEN = {"default": {"BACKEND": "tests.layers.BrokenLayer"}}


@pytest.fixture
def recorded():
    """Sends through a non-local layer that records them; returns the decoded frames."""
    from channels.layers import channel_layers

    RecordingLayer.sent.clear()
    with override_settings(CHANNEL_LAYERS=RECORDING):
        channel_layers.backends.clear()

        def frames() -> list[tuple[str, dict]]:
            assert broadcast.flush(timeout=5)
            return [(group, json.loads(message["frame"])) for group, message in RecordingLayer.sent]

        yield frames
    channel_layers.backends.clear()


@pytest.mark.django_db
def test_a_save_is_broadcast_only_when_its_transaction_commits(django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        Dog.objects.create(name="Rex")
    assert len(callbacks) == 1, "the broadcast waits for the commit"


@pytest.mark.django_db
def test_models_no_resource_names_are_not_broadcast(django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        Unwatched.objects.create(title="quiet")
    assert callbacks == []


@pytest.mark.django_db
def test_deleting_a_queryset_of_a_model_no_resource_names_takes_one_delete_query(django_assert_num_queries):
    Unwatched.objects.bulk_create([Unwatched(title=str(n)) for n in range(3)])
    with django_assert_num_queries(1) as queries:
        Unwatched.objects.all().delete()
    assert queries.captured_queries[0]["sql"].startswith("DELETE")
    assert not Unwatched.objects.exists()


@pytest.mark.django_db
def test_raw_saves_from_fixtures_are_not_broadcast(django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        broadcast.on_post_save(Dog, Dog(id=1, name="loaded"), raw=True)
    assert callbacks == []


@pytest.mark.django_db(transaction=True)
def test_each_change_goes_to_its_table_group_and_its_record_group(recorded):
    dog = Dog.objects.create(name="Rex")
    sent = recorded()
    assert [group for group, _ in sent] == ["harper.dogs.dog", f"harper.dogs.dog.{dog.pk}"]
    assert sent[0][1] == sent[1][1], "one frame, encoded once, for both groups"
    assert sent[0][1]["value"] == {"id": dog.pk, "name": "Rex", "breed": "", "age": 0}


@pytest.mark.django_db(transaction=True)
def test_changes_reach_the_layer_in_commit_order(recorded):
    dog = Dog.objects.create(name="Rex", age=0)
    for age in range(1, 51):
        dog.age = age
        dog.save()
    dog_pk = dog.pk
    dog.delete()
    record_frames = [frame for group, frame in recorded() if group == f"harper.dogs.dog.{dog_pk}"]
    assert [f.get("value", {}).get("age") for f in record_frames] == [*range(51), None]
    assert record_frames[-1]["type"] == "delete"


@pytest.mark.django_db(transaction=True)
def test_a_rolled_back_transaction_broadcasts_nothing(recorded):
    with transaction.atomic():
        Dog.objects.create(name="Ghost")
        transaction.set_rollback(True)
    assert recorded() == []


@pytest.mark.django_db(transaction=True)
def test_the_frame_holds_the_state_at_save_time_not_later_changes(recorded):
    with transaction.atomic():
        dog = Dog.objects.create(name="Saved name")
        dog.name = "Unsaved change"
    assert recorded()[0][1]["value"]["name"] == "Saved name"


@pytest.mark.django_db(transaction=True)
def test_saving_succeeds_and_the_failure_is_logged_when_the_layer_is_down(caplog):
    from channels.layers import channel_layers

    with override_settings(CHANNEL_LAYERS=BROKEN):
        channel_layers.backends.clear()
        before = metrics.snapshot().get("broadcast_failed", 0)
        with caplog.at_level(logging.WARNING, logger="harper_resources"):
            dog = Dog.objects.create(name="Rex")
            dog.name = "Rex 2"
            dog.save()
            assert broadcast.flush(timeout=5)
    channel_layers.backends.clear()
    assert Dog.objects.get(pk=dog.pk).name == "Rex 2", "the write is never lost"
    assert metrics.snapshot()["broadcast_failed"] >= before + 4
    assert "group_send failed" in caplog.text


@pytest.mark.django_db(transaction=True)
def test_a_record_that_cannot_be_encoded_is_saved_and_not_broadcast(recorded, monkeypatch, caplog):
    def refuse(instance, version):
        raise TypeError("not encodable")

    monkeypatch.setattr(tables, "put_frame", refuse)
    monkeypatch.setattr(metrics, "_last_logged", {})  # an earlier test's line must not throttle this one
    before = metrics.snapshot().get("encode_failed", 0)
    with caplog.at_level(logging.WARNING, logger="harper_resources"):
        Dog.objects.create(name="Odd")
    assert Dog.objects.filter(name="Odd").exists()
    assert recorded() == []
    assert metrics.snapshot()["encode_failed"] == before + 1
    assert "could not record the change of dogs.Dog" in caplog.text


@pytest.mark.django_db(transaction=True)
def test_a_full_broadcast_queue_drops_counts_and_logs_instead_of_blocking(monkeypatch, caplog):
    sender = broadcast.LayerSender("default", maxsize=1)
    # Hold the sender's loop so nothing drains while we submit.
    import threading

    gate = threading.Event()
    sender._loop.call_soon_threadsafe(gate.wait, 5)
    before = metrics.snapshot().get("broadcast_dropped", 0)
    with caplog.at_level(logging.WARNING, logger="harper_resources"):
        for _ in range(3):
            sender.submit([("g", protocol.event("g", "{}"))])
    gate.set()
    assert metrics.snapshot()["broadcast_dropped"] == before + 2
    assert "broadcast queue full" in caplog.text


@pytest.mark.django_db(transaction=True)
def test_publish_from_sync_code_sends_a_message_frame_without_touching_the_record(recorded):
    dog = Dog.objects.create(name="Rex")
    recorded()
    RecordingLayer.sent.clear()
    broadcast.publish(Dog, str(dog.pk), {"note": "good with kids"})
    group, frame = recorded()[-1]
    assert group == f"harper.dogs.dog.{dog.pk}"
    assert (frame["type"], frame["id"], frame["value"]) == ("message", dog.pk, {"note": "good with kids"})
    assert Dog.objects.get(pk=dog.pk).name == "Rex"


@pytest.mark.django_db(transaction=True)
def test_publish_inside_a_rolled_back_transaction_sends_nothing(recorded):
    dog = Dog.objects.create(name="Rex")
    recorded()
    RecordingLayer.sent.clear()
    with transaction.atomic():
        broadcast.publish(dog, dog.pk, "never")
        transaction.set_rollback(True)
    assert recorded() == []


def test_publish_refuses_a_key_the_model_can_never_have():
    with pytest.raises(ValueError, match="not a valid primary key"):
        broadcast.publish(Dog, "abc", "hello")


class SenderKilled(BaseException):
    """Not an Exception: the sender loop does not catch it, and its thread ends."""


@pytest.mark.filterwarnings("ignore::pytest.PytestUnhandledThreadExceptionWarning")
@pytest.mark.django_db(transaction=True)
def test_a_sender_thread_that_died_is_replaced_once_and_what_it_had_queued_is_sent(recorded, monkeypatch, caplog):
    import threading

    gate = threading.Event()
    record = RecordingLayer.group_send
    calls = []

    async def dies_on_the_first_send(self, group, message):
        if not calls:
            calls.append(group)
            gate.wait(5)  # changes queue up behind this one meanwhile
            raise SenderKilled()
        await record(self, group, message)

    monkeypatch.setattr(RecordingLayer, "group_send", dies_on_the_first_send)
    sender = broadcast._sender()
    with caplog.at_level(logging.WARNING, logger="harper_resources"):
        for name in ("lost with the thread", "queued 1", "queued 2"):
            Dog.objects.create(name=name)
        gate.set()
        sender._thread.join(5)
        assert not sender._thread.is_alive()
        Dog.objects.create(name="after")
        Dog.objects.create(name="after, again")
        names = [frame["value"]["name"] for group, frame in recorded() if group == "harper.dogs.dog"]
    assert names == ["queued 1", "queued 2", "after", "after, again"]
    assert caplog.text.count("broadcast sender thread died") == 1


FORKED_SAVE = """
import os
from harper_resources import broadcast
from project.dogs.models import Dog
dog = Dog.objects.get(pk=341)
dog.name = "saved by the parent"
dog.save()
assert broadcast.flush(5)
pid = os.fork()
if pid == 0:
    dog.name = "saved by a forked child"
    dog.save()
    os._exit(0 if broadcast.flush(5) else 1)
_, status = os.waitpid(pid, 0)
assert os.waitstatus_to_exitcode(status) == 0, "the forked child could not send its change"
"""


@pytest.mark.django_db(transaction=True)
async def test_a_forked_child_sends_its_changes_with_a_sender_of_its_own(ws, tmp_path, redis_service):
    import asyncio

    from tests.conftest import redis_layer_settings, use_layers
    from tests.live import DemoServer, run_script

    layers = redis_layer_settings("redis-pubsub")
    env = {"REDIS_URL": redis_service, "REDIS_LAYER": "pubsub", "REDIS_PREFIX": layers["default"]["CONFIG"]["prefix"]}
    demo = await asyncio.to_thread(DemoServer(tmp_path, env=env).prepare)
    with use_layers(layers):
        client = await ws("/dog/341")  # not in this test's database: only live frames come
        await asyncio.to_thread(run_script, FORKED_SAVE, demo.env)
        names = [(await client.receive(timeout=10))["value"]["name"] for _ in range(2)]
    assert names == ["saved by the parent", "saved by a forked child"]


@pytest.mark.django_db(transaction=True)
@override_settings(HARPER_RESOURCES_BROADCAST_QUEUE_SIZE=5, HARPER_RESOURCES_PUBLISH_QUEUE_SIZE=5)
def test_with_the_publish_queue_full_a_save_is_still_sent_and_ahead_of_the_messages(recorded, monkeypatch, caplog):
    import threading

    monkeypatch.setattr(broadcast, "_sender_instance", None)  # a sender with the settings above
    monkeypatch.setattr(metrics, "_last_logged", {})
    sender = broadcast._sender()
    gate = threading.Event()
    sender._loop.call_soon_threadsafe(gate.wait, 5)  # nothing drains while we submit
    before = metrics.snapshot().get("publish_dropped", 0)
    with caplog.at_level(logging.WARNING, logger="harper_resources"):
        for n in range(20):
            broadcast.publish(Dog, 1, {"n": n})
        Dog.objects.create(name="saved while clients flood")
    gate.set()
    frames = [frame for _, frame in recorded()]
    assert [frame["type"] for frame in frames] == ["put"] * 2 + ["message"] * 10, "the change first, both groups"
    assert [frame["value"] for frame in frames[2::2]] == [{"n": n} for n in range(5)]
    assert metrics.snapshot()["publish_dropped"] == before + 15
    assert caplog.text.count("publish queue full") == 1
