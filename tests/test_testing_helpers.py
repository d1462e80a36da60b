"""harper_resources.testing used as a project's own tests would use it (the plugin is
enabled in tests/conftest.py with ``pytest_plugins = ["harper_resources.testing"]``)."""

from __future__ import annotations

import pytest
from asgiref.sync import async_to_sync
from django.contrib.auth.models import User
from django.test import TestCase, TransactionTestCase
from django.urls import path

from harper_resources import Resource, publish
from harper_resources.routing import ResourceRouter
from harper_resources.testing import ResourceCommunicator, run_and_broadcast
from project.dogs.models import Dog


class DogResource(Resource):
    model = Dog


application = ResourceRouter([path("dog/<str:id>", DogResource.as_asgi())])


@pytest.fixture
def admin_user(transactional_db):
    return User.objects.create_superuser("boss", password="not-used-here")


@pytest.mark.django_db(transaction=True)
async def test_a_socket_sees_the_record_then_every_committed_change(
    resource_communicator, in_memory_channel_layer, admin_user
):
    rex = await run_and_broadcast(Dog.objects.create, name="Rex", age=3)
    socket = await resource_communicator(application, f"/dog/{rex.pk}", user=admin_user)
    assert (await socket.receive_put())["value"]["age"] == 3

    rex.age = 4
    await run_and_broadcast(rex.save)
    assert (await socket.receive_put())["value"]["age"] == 4
    await run_and_broadcast(publish, Dog, rex.pk, {"note": "walked"})
    assert (await socket.receive_message())["value"] == {"note": "walked"}
    pk = rex.pk
    await run_and_broadcast(rex.delete)
    assert (await socket.receive_delete())["id"] == pk
    await socket.assert_nothing()


@pytest.mark.django_db(transaction=True)
async def test_reads_fail_the_test_when_the_frame_is_not_the_one_asked_for(
    resource_communicator, in_memory_channel_layer, admin_user
):
    rex = await run_and_broadcast(Dog.objects.create, name="Rex")
    socket = await resource_communicator(application, f"/dog/{rex.pk}", user=admin_user)
    with pytest.raises(AssertionError, match="expected a delete frame"):
        await socket.receive_delete()  # the first frame is a put
    await run_and_broadcast(rex.save)
    with pytest.raises(AssertionError, match="expected nothing"):
        await socket.assert_nothing(timeout=3)
    with pytest.raises(AssertionError, match="no frame within"):
        await socket.receive_frame(timeout=0.2)


@pytest.mark.django_db(transaction=True)
async def test_a_refused_visitor_is_closed_with_3000(in_memory_channel_layer):
    rex = await run_and_broadcast(Dog.objects.create, name="Rex")
    socket = ResourceCommunicator(application, f"/dog/{rex.pk}")  # no user: anonymous
    await socket.connect()
    assert await socket.receive_close() == 3000
    again = ResourceCommunicator(application, f"/dog/{rex.pk}")
    await again.connect()
    with pytest.raises(AssertionError, match="closed with 3000 instead of sending a frame"):
        await again.receive_frame()


class DogSocketTests(TransactionTestCase):
    """The unittest way: a TransactionTestCase commits each save, so it is broadcast."""

    def test_a_save_reaches_the_socket(self):
        boss = User.objects.create_superuser("boss", password="not-used-here")
        rex = Dog.objects.create(name="Rex")

        async def scenario():
            socket = ResourceCommunicator(application, f"/dog/{rex.pk}", user=boss)
            await socket.connect()
            await socket.receive_put()
            rex.name = "Rex II"
            await run_and_broadcast(rex.save)
            put = await socket.receive_put()
            await socket.disconnect()
            return put

        self.assertEqual(async_to_sync(scenario)()["value"]["name"], "Rex II")


class DogBroadcastInTestCaseTests(TestCase):
    """In a TestCase nothing commits: a save's broadcast waits for an on_commit that never
    comes. captureOnCommitCallbacks shows it queued, and with execute=True runs it. (A
    socket does not work here: its first read runs on a connection of its own that
    cannot see the TestCase's uncommitted rows. Use TransactionTestCase.)"""

    def test_a_save_queues_its_broadcast_for_the_commit(self):
        with self.captureOnCommitCallbacks(execute=False) as callbacks:
            Dog.objects.create(name="Rex")
        self.assertEqual(len(callbacks), 1)

    def test_a_save_of_a_model_no_resource_streams_queues_nothing(self):
        from tests.testapp.models import Unwatched

        with self.captureOnCommitCallbacks(execute=True) as callbacks:
            Unwatched.objects.create(title="quiet")
        self.assertEqual(callbacks, [])


@pytest.mark.django_db(transaction=True)
async def test_user_is_kept_through_the_projects_whole_asgi_application(resource_communicator, in_memory_channel_layer):
    """The docs pass ``mysite.asgi.application`` (origin check, session and Basic auth):
    ``user=`` must survive that stack, as it does Channels' own AuthMiddleware."""
    from project.asgi import application

    boss = await run_and_broadcast(User.objects.create_user, "boss", password="x")
    socket = await resource_communicator(application, "/me", user=boss)
    assert await socket.receive_frame() == {"username": "boss", "isStaff": False}
