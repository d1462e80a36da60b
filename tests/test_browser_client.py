"""The demo pages on the shipped JavaScript client, in headless chromium: they come back after a server restart
and show every change made while the server was down, without a reload; deleted dogs are shown as deleted; the
connection is described in words."""

from __future__ import annotations

import json
import urllib.request
from collections.abc import Iterator

import pytest

from tests.browser import browser
from tests.live import DemoServer, run_script

#: Generous: the page's backoff may wait up to 15 s after the restart, and the machine is shared.
RECOVERY_MS = 45_000


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DemoServer]:
    """A demo server of this module's own, which its tests stop and start again on the same port."""
    demo = DemoServer(tmp_path_factory.mktemp("restarts")).start()
    yield demo
    demo.stop()


@pytest.fixture
def chromium() -> Iterator[object]:
    with browser() as launched:
        yield launched


def orm(server: DemoServer, code: str) -> str:
    """Run ORM ``code`` in a process of its own on the server's database (the server may be down); the last
    line it printed (``shell`` may print a banner first)."""
    prelude = "from project.dogs.models import Dog\n"
    lines = run_script(prelude + code, server.env).stdout.strip().splitlines()
    return lines[-1] if lines else ""


def add_dog(server: DemoServer, name: str, breed: str, age: int) -> int:
    return int(orm(server, f"print(Dog.objects.create(name={name!r}, breed={breed!r}, age={age}).pk)"))


def open_page(chromium, url: str):
    """A page at ``url``, marked so that a reload (which would lose the mark) is caught."""
    page = chromium.new_context().new_page()
    page.goto(url)
    page.evaluate("window.sameDocument = true")
    return page


def restart_after(server: DemoServer, pages, change: str) -> None:
    """Stop the server, wait until every page says it is reconnecting, run ``change``, start the server again."""
    from playwright.sync_api import expect

    server.stop()
    for page in pages:
        expect(page.locator("#badge")).to_have_text("reconnecting…", timeout=10_000)
        expect(page.locator("#status-text")).to_contain_text("The connection was lost.")
    orm(server, change)
    server.start(prepare=False)


def test_the_profile_page_shows_edits_made_while_the_server_was_down_without_a_reload(server, chromium):
    from playwright.sync_api import expect

    pk = add_dog(server, "Biscuit", "Dachshund", 2)
    page = open_page(chromium, f"{server.url}/dogs/{pk}/")
    expect(page.locator("#badge")).to_have_text("live", timeout=10_000)
    expect(page.locator("#status-text")).to_contain_text("connection active", timeout=10_000)
    expect(page.locator("#hint")).to_contain_text("admin")

    restart_after(
        server,
        [page],
        f"d = Dog.objects.get(pk={pk}); d.name = 'Sir Biscuit'; d.save(); d.age = 3; d.save()",
    )

    expect(page.locator("#dog-name")).to_have_text("Sir Biscuit", timeout=RECOVERY_MS)
    expect(page.locator("#dog-age")).to_have_text("3")
    expect(page.locator("#badge")).to_have_text("live")
    expect(page.locator("#status-text")).to_contain_text("connection active", timeout=10_000)
    assert page.evaluate("window.sameDocument") is True, "the page was not reloaded"
    page.fill("#note-input", "back again")
    page.click("#note-form button")
    expect(page.locator("#notes li")).to_have_text(["back again"], timeout=10_000)


def test_the_profile_page_shows_a_dog_deleted_while_the_server_was_down_as_deleted(server, chromium):
    from playwright.sync_api import expect

    pk = add_dog(server, "Pepper", "Poodle", 4)
    page = open_page(chromium, f"{server.url}/dogs/{pk}/")
    expect(page.locator("#badge")).to_have_text("live", timeout=10_000)

    restart_after(server, [page], f"Dog.objects.get(pk={pk}).delete()")

    expect(page.locator("#deleted")).to_be_visible(timeout=RECOVERY_MS)
    expect(page.locator("#deleted")).to_contain_text("This dog was deleted")
    expect(page.locator("#dog-breed")).to_be_hidden()
    expect(page.locator("#dog-age")).to_be_hidden()
    expect(page.locator("a", has_text="Edit in the admin")).to_be_hidden()
    assert page.evaluate("window.sameDocument") is True

    orm(server, f"Dog.objects.create(pk={pk}, name='Pepper', breed='Poodle', age=5)")
    expect(page.locator("#deleted")).to_be_hidden(timeout=10_000)
    expect(page.locator("#dog-age")).to_have_text("5")
    expect(page.locator("a", has_text="Edit in the admin")).to_be_visible()


def test_the_list_page_shows_edits_new_dogs_and_deletions_made_while_the_server_was_down(server, chromium):
    from playwright.sync_api import expect

    kept = add_dog(server, "Luna", "Border Collie", 5)
    renamed = add_dog(server, "Bolt", "Whippet", 1)
    deleted = add_dog(server, "Scout", "Pointer", 7)
    page = open_page(chromium, server.url + "/")
    expect(page.locator("#badge")).to_have_text("live", timeout=10_000)

    restart_after(
        server,
        [page],
        f"d = Dog.objects.get(pk={renamed}); d.name = 'Lightning Bolt'; d.age = 2; d.save()\n"
        f"Dog.objects.get(pk={deleted}).delete()\n"
        "print(Dog.objects.create(name='Newcomer', breed='Mutt', age=1).pk)",
    )
    new = int(orm(server, "print(Dog.objects.get(name='Newcomer').pk)"))

    expect(page.locator(f"#dog-{new}")).to_have_text("Newcomer (Mutt, 1)", timeout=RECOVERY_MS)
    expect(page.locator(f"#dog-{new} a")).to_have_attribute("href", f"/dogs/{new}/")
    expect(page.locator(f"#dog-{renamed}")).to_have_text("Lightning Bolt (Whippet, 2)")
    expect(page.locator(f"#dog-{deleted}")).to_have_text("Scout deleted")
    expect(page.locator(f"#dog-{deleted}")).to_have_class("gone")
    assert page.locator(f"#dog-{deleted} a").count() == 0, "a deleted dog links nowhere"
    expect(page.locator(f"#dog-{kept}")).to_have_text("Luna (Border Collie, 5)")
    expect(page.locator("#badge")).to_have_text("live")
    assert page.evaluate("window.sameDocument") is True, "the page was not reloaded"

    # And it goes on live after the restart.
    orm(server, f"d = Dog.objects.get(pk={kept}); d.age = 6; d.save()")
    expect(page.locator(f"#dog-{kept}")).to_have_text("Luna (Border Collie, 6)", timeout=10_000)


CONNECT_AND_WATCH = """async (path) => {
  const { connect } = await import('/static/harper_resources/client.js');
  return await new Promise((resolve) => {
    const states = [];
    connect(path, {
      onStateChange(state, info) {
        states.push([state, info.text, info.code ?? null]);
        // Wait a while: a client that reconnects would show 'reconnecting' meanwhile.
        if (state === 'closed') setTimeout(() => resolve(states), 1500);
      },
    });
  });
}"""


@pytest.mark.parametrize(
    ("path", "code", "text"),
    [
        ("/dog/not-a-number", 4404, "Not found: there is nothing live at this address."),
        ("/me", 3000, "Not logged in: log in to see this."),
        ("/dog/?since=abc", 4400, "The server refused the subscription options in the address."),
    ],
)
def test_a_refused_connection_is_told_in_words_and_not_retried(server, chromium, path, code, text):
    page = chromium.new_context().new_page()
    page.goto(server.url + "/")
    states = page.evaluate(CONNECT_AND_WATCH, path)
    # The server accepts, then closes with the code (so a browser sees the code, not 1006): "open" may come first.
    assert states[0] == ["connecting", "Connecting…", None]
    assert states[-1] == ["closed", text, code]
    assert [state for state, _, _ in states[1:-1]] in ([], ["open"]), "a refusal is not retried"


def test_the_client_script_is_served_as_javascript_beside_its_types(server):
    for name, kind in (("client.js", "javascript"), ("client.d.ts", "")):
        with urllib.request.urlopen(f"{server.url}/static/harper_resources/{name}", timeout=10) as response:
            assert response.status == 200
            assert kind in response.headers["Content-Type"]
            body = response.read().decode()
        assert "export function connect" in body


def test_the_demo_pages_load_the_shipped_client(server):
    for path in ("/", "/dogs/341/"):
        with urllib.request.urlopen(server.url + path, timeout=10) as response:
            body = response.read().decode()
        assert '<script type="module">' in body
        assert json.dumps("/static/harper_resources/client.js") in body
        assert "new WebSocket" not in body, "the pages use the client, not a socket of their own"
