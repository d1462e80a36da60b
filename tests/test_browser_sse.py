"""The demo's EventSource page in headless Chromium: an admin edit appears, and after the
server is killed and started again the page catches up through ``Last-Event-ID``."""

from __future__ import annotations

import time

import pytest

from tests.browser import browser
from tests.live import AdminClient, DemoServer, run_script


@pytest.fixture
def server(tmp_path):
    """The demo itself (project.asgi), under daphne as ``manage.py rundemo`` serves it."""
    server = DemoServer(tmp_path).start()
    yield server
    server.stop()


def kill(server: DemoServer) -> None:
    """End the server at once, as a crash would (no goodbye to any client)."""
    assert server.process is not None
    server.process.kill()
    server.process.wait()
    server.log.close()


def save_while_down(server: DemoServer, code: str) -> None:
    """Change the database from another process while no server runs."""
    run_script(f"from project.dogs.models import Dog\n{code}", server.env)


def test_the_event_source_page_follows_edits_and_catches_up_after_a_restart(server):
    from playwright.sync_api import expect

    admin = AdminClient(server.url)
    pk = admin.add_dog("Comet", "Whippet", 2)
    with browser() as chromium:
        page = chromium.new_context().new_page()
        resumes: list[str | None] = []
        page.on(
            "request",
            lambda request: (
                resumes.append(request.all_headers().get("last-event-id"))
                if request.url.endswith(f"/dog/{pk}")
                else None
            ),
        )
        page.goto(f"{server.url}/dogs/{pk}/events/")
        expect(page.locator("#badge")).to_have_text("connection active", timeout=10000)
        expect(page.locator("#last-event-id")).not_to_be_empty()

        admin.change_dog(pk, "Comet Two", "Whippet", 3)
        saved = time.monotonic()
        expect(page.locator("#dog-name")).to_have_text("Comet Two", timeout=5000)
        expect(page.locator("#dog-age")).to_have_text("3")
        assert time.monotonic() - saved < 5.0
        seen = page.locator("#last-event-id").text_content()
        assert seen and float(seen) > 0

        kill(server)
        expect(page.locator("#badge")).to_have_text("reconnecting…", timeout=10000)
        save_while_down(server, f"dog = Dog.objects.get(pk={pk}); dog.name = 'Comet Three'; dog.age = 4; dog.save()")
        server.start(prepare=False)  # the same port and database
        expect(page.locator("#dog-name")).to_have_text("Comet Three", timeout=20000)
        expect(page.locator("#dog-age")).to_have_text("4")
        assert seen in resumes, f"the browser resumed from the version it had seen ({seen}): {resumes}"
        resumed = page.locator("#last-event-id").text_content()
        assert resumed and float(resumed) > float(seen)

        # A delete while the server is down reaches the page only through the resume: a
        # fresh subscription to a missing record would send nothing.
        kill(server)
        expect(page.locator("#badge")).to_have_text("reconnecting…", timeout=10000)
        save_while_down(server, f"Dog.objects.get(pk={pk}).delete()")
        server.start(prepare=False)
        expect(page.locator("#deleted")).to_be_visible(timeout=20000)
        assert resumed in resumes
