"""The shipped client's logic (harper_resources/static/harper_resources/client.js) in headless chromium, on a
fake WebSocket: which `since` it resumes with, what reaches which callback, its backoff, and when it gives up.
No server: the page and the script are served by the test itself."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.browser import browser

CLIENT_JS = Path(__file__).resolve().parent.parent / "harper_resources" / "static" / "harper_resources" / "client.js"
ORIGIN = "http://client.test"

#: A WebSocket stand-in the tests drive: open(), frame(value), drop(code). Each instance is kept in order.
FAKE_SOCKET = """
window.sockets = [];
window.FakeSocket = class {
  constructor(url, protocols) {
    this.url = url; this.protocols = protocols; this.readyState = 0; this.sent = []; this.closedWith = null;
    window.sockets.push(this);
  }
  open() { this.readyState = 1; this.onopen({}); }
  frame(value) { this.onmessage({ data: typeof value === 'string' ? value : JSON.stringify(value) }); }
  drop(code, reason = '') { this.readyState = 3; this.onclose({ code, reason }); }
  send(data) { this.sent.push(data); }
  close(code, reason) { this.readyState = 3; this.closedWith = code; }
};
window.nextSocket = async (count) => {
  for (let i = 0; i < 200 && window.sockets.length < count; i++) await new Promise((r) => setTimeout(r, 10));
  return window.sockets[count - 1];
};
"""


@pytest.fixture(scope="module")
def page() -> Iterator[object]:
    """A blank page at a made-up origin that can import the client as an ES module."""
    with browser() as chromium:
        page = chromium.new_page()

        def serve(route) -> None:
            if route.request.url.endswith("/client.js"):
                route.fulfill(body=CLIENT_JS.read_text(), content_type="text/javascript")
            else:
                route.fulfill(body="<!doctype html><title>client test</title>", content_type="text/html")

        page.route(ORIGIN + "/**", serve)
        yield page


@pytest.fixture
def js(page):
    """``js(body)`` runs ``body`` in an async function with ``connect``, the client module as ``client``, and
    a fresh FakeSocket, on a freshly loaded page (no connection of another test left), and returns what it
    returns."""
    page.goto(ORIGIN + "/dogs/")
    page.evaluate(FAKE_SOCKET)

    def run(body: str):
        return page.evaluate(
            "async () => { const client = await import('/client.js'); const { connect } = client;\n" + body + "\n}"
        )

    return run


def test_a_resume_asks_since_the_newest_record_version_of_any_record_not_of_messages(js):
    result = js("""
      const seen = [];
      connect('/dog/', {
        WebSocket: FakeSocket, minDelay: 1, maxDelay: 1, resumeOverlap: 5,
        onRecord: (id, value, frame) => seen.push(['record', id, value.name, frame.version]),
        onDelete: (id, frame) => seen.push(['delete', id, frame.version]),
        onMessage: (value, frame) => seen.push(['message', value, frame.type ?? null]),
      });
      const first = await nextSocket(1);
      first.open();
      first.frame({ type: 'put', id: 1, value: { name: 'Rex' }, version: 10, localTime: 1 });
      first.frame({ type: 'put', id: 2, value: { name: 'Luna' }, version: 30.5, localTime: 1 });
      first.frame({ type: 'put', id: 1, value: { name: 'Rex II' }, version: 20, localTime: 1 });
      first.frame({ type: 'message', id: 1, value: { note: 'hi' }, version: 99999, localTime: 1 });
      first.frame({ dogId: '1', status: 'connection active' });
      first.frame({ type: 'delete', id: 2, version: 40, localTime: 1 });
      first.frame({ type: 'put', id: 1, value: { name: 'stale' }, version: 15, localTime: 1 });
      first.frame({ type: 'put', id: 1, value: { name: 'Rex II' }, version: 20, localTime: 1 });
      first.drop(1006);
      const second = await nextSocket(2);
      return { first: first.url, second: second.url, seen };
    """)
    assert result["first"] == "ws://client.test/dog/", "the first connection asks for the full state"
    # 40 is the newest; a collection reaches back resumeOverlap (5 ms here) for a transaction
    # that took an older version but committed after it.
    assert result["second"] == "ws://client.test/dog/?since=35"
    assert result["seen"] == [
        ["record", 1, "Rex", 10],
        ["record", 2, "Luna", 30.5],
        ["record", 1, "Rex II", 20],
        ["message", {"note": "hi"}, "message"],
        ["message", {"dogId": "1", "status": "connection active"}, None],
        ["delete", 2, 40],
    ], "an older or repeated state of a record is skipped"


def test_a_record_path_resumes_from_its_exact_version_and_a_collection_by_default_a_minute_before(js):
    result = js("""
      const record = connect('/dog/7', { WebSocket: FakeSocket, minDelay: 1, maxDelay: 1 });
      const first = await nextSocket(1);
      first.open();
      first.frame({ type: 'put', id: 7, value: { name: 'Rex' }, version: 100000.5, localTime: 1 });
      first.drop(1006);
      const second = await nextSocket(2);
      record.close();
      const collection = connect('/dog/', { WebSocket: FakeSocket, minDelay: 1, maxDelay: 1 });
      const third = await nextSocket(3);
      third.open();
      third.frame({ type: 'put', id: 7, value: { name: 'Rex' }, version: 100000.5, localTime: 1 });
      third.drop(1006);
      const fourth = await nextSocket(4);
      collection.close();
      return { record: second.url, collection: fourth.url };
    """)
    assert result["record"] == "ws://client.test/dog/7?since=100000.5"
    assert result["collection"] == "ws://client.test/dog/?since=40000.5"


def test_a_reset_tells_the_app_to_start_over_and_forgets_the_versions_it_had(js):
    result = js("""
      const seen = [];
      connect('/dog/?previousCount=5', {
        WebSocket: FakeSocket, minDelay: 1, maxDelay: 1, resumeOverlap: 0,
        onRecord: (id, value) => seen.push(['record', id, value.name]),
        onReset: (frame) => seen.push(['reset', frame.version]),
      });
      const first = await nextSocket(1);
      first.open();
      first.frame({ type: 'put', id: 'a', value: { name: 'Rex' }, version: 50, localTime: 1 });
      first.drop(1012);
      const second = await nextSocket(2);
      second.open();
      second.frame({ type: 'reset', version: 70 });
      second.frame({ type: 'put', id: 'a', value: { name: 'Rex again' }, version: 5, localTime: 1 });
      second.drop(4011);
      const third = await nextSocket(3);
      return { second: second.url, third: third.url, seen };
    """)
    assert result["second"] == "ws://client.test/dog/?previousCount=5&since=50"
    assert result["seen"] == [["record", "a", "Rex"], ["reset", 70], ["record", "a", "Rex again"]]
    assert result["third"].endswith("since=5"), "after a reset, only what came after it counts"


def test_reconnect_delays_double_from_the_minimum_up_to_the_cap_and_are_jittered_down_to_half(js):
    result = js("""
      async function delays(random) {
        const base = sockets.length, seen = [];
        const connection = connect('/dog/1', {
          WebSocket: FakeSocket, minDelay: 10, maxDelay: 80, random,
          onStateChange: (state, info) => { if (info.delay !== undefined) seen.push(info.delay); },
        });
        for (let n = 1; n <= 6; n++) (await nextSocket(base + n)).drop(1006);
        connection.close();
        return seen;
      }
      return { top: await delays(() => 0.999999), bottom: await delays(() => 0) };
    """)
    assert result["top"] == [10, 20, 40, 80, 80, 80]
    assert result["bottom"] == [5, 10, 20, 40, 40, 40]


@pytest.mark.parametrize(
    ("code", "text"),
    [
        (3000, "Not logged in: log in to see this."),
        (3003, "You are not allowed to see this."),
        (4400, "The server refused the subscription options in the address."),
        (4404, "Not found: there is nothing live at this address."),
        (1000, "The server ended this stream."),
    ],
)
def test_a_refusal_that_a_retry_cannot_heal_closes_for_good_with_a_sentence(js, code, text):
    result = js(f"""
      const states = [];
      connect('/dog/1', {{
        WebSocket: FakeSocket, minDelay: 1, maxDelay: 1,
        onStateChange: (state, info) => states.push([state, info.text, info.permanent ?? false]),
      }});
      const socket = await nextSocket(1);
      socket.open();
      socket.drop({code});
      await new Promise((r) => setTimeout(r, 200));
      return {{ states, sockets: sockets.length }};
    """)
    assert result["states"] == [["connecting", "Connecting…", False], ["open", "Live.", False], ["closed", text, True]]
    assert result["sockets"] == 1, "no second attempt"


@pytest.mark.parametrize(
    ("code", "text"),
    [
        (1006, "The connection was lost."),
        (1011, "The server had an error."),
        (4011, "The server had an error."),
        (4008, "The server closed the connection: this page sent too many messages, too fast."),
        (4009, "The server closed the connection: a message from this page was too large."),
        (1013, "The server closed the connection: this page could not keep up with the updates."),
        (4013, "The server closed the connection: this page could not keep up with the updates."),
    ],
)
def test_a_close_that_can_heal_is_told_in_words_and_retried(js, code, text):
    result = js(f"""
      const states = [];
      connect('/dog/1', {{
        WebSocket: FakeSocket, minDelay: 1, maxDelay: 1,
        onStateChange: (state, info) => states.push([state, info.text]),
      }});
      (await nextSocket(1)).drop({code});
      (await nextSocket(2)).open();
      return states;
    """)
    assert result[:2] == [["connecting", "Connecting…"], ["reconnecting", text + " Reconnecting in 1 s…"]]
    assert result[-1] == ["open", "Live."]


def test_send_is_json_only_while_open_and_close_stops_for_good(js):
    result = js("""
      const states = [];
      const dog = connect('/dog/1', { WebSocket: FakeSocket, minDelay: 1, maxDelay: 1,
        onStateChange: (state) => states.push(state) });
      const before = dog.send({ note: 'too early' });
      const socket = await nextSocket(1);
      socket.open();
      const during = dog.send({ dogId: '1', note: 'good with kids' });
      dog.close();
      const after = dog.send({ note: 'too late' });
      await new Promise((r) => setTimeout(r, 100));
      return { before, during, after, sent: socket.sent, closedWith: socket.closedWith, states,
               sockets: sockets.length };
    """)
    assert (result["before"], result["during"], result["after"]) == (False, True, False)
    assert result["sent"] == ['{"dogId":"1","note":"good with kids"}']
    assert result["closedWith"] == 1000
    assert result["states"] == ["connecting", "open", "closed"]
    assert result["sockets"] == 1


def test_the_browser_coming_back_online_reconnects_at_once(js):
    result = js("""
      connect('/dog/1', { WebSocket: FakeSocket, minDelay: 60000, maxDelay: 60000 });
      (await nextSocket(1)).drop(1006);
      dispatchEvent(new Event('online'));
      return (await nextSocket(2)) !== undefined;
    """)
    assert result is True


def test_coming_back_online_while_a_reconnect_connects_opens_no_second_socket(js):
    result = js("""
      const seen = [];
      const connection = connect('/dog/1', {
        WebSocket: FakeSocket, minDelay: 60000, maxDelay: 60000, onMessage: (value) => seen.push(value),
      });
      (await nextSocket(1)).drop(1006);
      dispatchEvent(new Event('online'));  // reconnects at once: socket 2 is connecting
      const second = await nextSocket(2);
      dispatchEvent(new Event('online'));  // a laptop waking fires both of these
      document.dispatchEvent(new Event('visibilitychange'));
      await new Promise((r) => setTimeout(r, 50));
      second.open();
      second.frame({ note: 'once' });
      connection.close();
      return { sockets: window.sockets.length, seen };
    """)
    assert result == {"sockets": 2, "seen": [{"note": "once"}]}


def test_the_page_shown_again_reconnects_at_once(js):
    result = js("""
      connect('/dog/1', { WebSocket: FakeSocket, minDelay: 60000, maxDelay: 60000 });
      (await nextSocket(1)).drop(1006);
      document.dispatchEvent(new Event('visibilitychange'));
      return (await nextSocket(2)) !== undefined;
    """)
    assert result is True


def test_a_relative_path_becomes_ws_on_http_and_wss_on_https(js):
    result = js("""
      return [client.resourceURL('/dog/341', 'http://example.com/page').href,
              client.resourceURL('dog/', 'https://example.com/app/page#x').href,
              client.resourceURL('wss://other.example/dog/1').href];
    """)
    assert result == ["ws://example.com/dog/341", "wss://example.com/app/dog/", "wss://other.example/dog/1"]
