"""Server-Sent Events on resource paths, against real uvicorn and daphne processes, with
a Python SSE client (httpx + httpx-sse): the same frames as the WebSocket stream, one
event each with ``id: <version>``, keep-alive comments, ``Last-Event-ID`` resume,
refusals as JSON, and nothing left behind once a client leaves."""

from __future__ import annotations

import json
import queue
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from httpx_sse import ServerSentEvent, connect_sse

from tests.live import ADMIN_PASSWORD, ADMIN_USER, AdminClient, DemoServer, run_script

READER, READER_PASSWORD = "reader", "reader-password-for-tests"
WATCHER, WATCHER_PASSWORD = "watcher", "watcher-password-for-tests"  # may view dogs
KEEPALIVE = 0.5
EVENT_STREAM = {"Accept": "text/event-stream"}


@pytest.fixture(scope="module", params=["uvicorn", "daphne"])
def server(request, tmp_path_factory):
    """The demo with SSE on its resource paths (tests.sse_asgi), a keep-alive of
    ``KEEPALIVE`` seconds, open streams checked again every second, a user who may log
    in but has no permission, and one who may view dogs."""
    server = DemoServer(
        tmp_path_factory.mktemp(f"sse-{request.param}"),
        env={"HARPER_RESOURCES_SSE_KEEPALIVE": str(KEEPALIVE), "HARPER_RESOURCES_REAUTH_INTERVAL": "1.0"},
        server=request.param,
        application="tests.sse_asgi:application",
    ).prepare()
    run_script(
        "from django.contrib.auth.models import Permission, User\n"
        f"User.objects.create_user({READER!r}, password={READER_PASSWORD!r})\n"
        f"watcher = User.objects.create_user({WATCHER!r}, password={WATCHER_PASSWORD!r})\n"
        "watcher.user_permissions.add(Permission.objects.get(codename='view_dog'))",
        server.env,
    )
    server.start(prepare=False)
    yield server
    server.stop()


@pytest.fixture(scope="module")
def admin(server):
    return AdminClient(server.url)


class Events:
    """One SSE connection read by httpx-sse in a thread, so every read has a deadline
    (keep-alive comments never reach ``iter_sse``, so its read timeout never fires)."""

    def __init__(self, url: str, headers: dict[str, str] | None = None, auth: Any = None) -> None:
        self.client = httpx.Client(timeout=httpx.Timeout(10.0), auth=auth)
        self.events: queue.Queue[ServerSentEvent | BaseException | None] = queue.Queue()
        self.opened = threading.Event()
        self.status = 0
        self.content_type = ""
        self.cache_control = ""
        self._thread = threading.Thread(target=self._read, args=(url, {**EVENT_STREAM, **(headers or {})}))
        self._thread.daemon = True
        self._thread.start()
        assert self.opened.wait(15), f"no response from {url}"
        assert self.status == 200, self.status

    def _read(self, url: str, headers: dict[str, str]) -> None:
        try:
            with connect_sse(self.client, "GET", url, headers=headers) as source:
                response = source.response
                self.status = response.status_code
                self.content_type = response.headers.get("content-type", "")
                self.cache_control = response.headers.get("cache-control", "")
                self.opened.set()
                for event in source.iter_sse():
                    self.events.put(event)
            self.events.put(None)
        except BaseException as exc:  # handed to the test
            self.opened.set()
            self.events.put(exc)

    def next(self, timeout: float = 10.0) -> ServerSentEvent:
        item = self.events.get(timeout=timeout)
        if isinstance(item, BaseException):
            raise item
        assert item is not None, "the stream ended"
        return item

    def next_record(self, timeout: float = 10.0) -> tuple[ServerSentEvent, dict[str, Any]]:
        """The next event with a record frame (``put``/``delete``), skipping the pulse."""
        deadline = time.monotonic() + timeout
        while True:
            event = self.next(timeout=max(0.1, deadline - time.monotonic()))
            frame = json.loads(event.data)
            if frame.get("type") in ("put", "delete"):
                return event, frame

    def nothing(self, seconds: float) -> bool:
        """True if no record event arrives within ``seconds``."""
        try:
            self.next_record(timeout=seconds)
        except queue.Empty:
            return True
        return False

    def close(self) -> None:
        self.client.close()
        self._thread.join(10)


@pytest.fixture
def sse(server) -> Iterator[Any]:
    opened: list[Events] = []

    def open_events(path: str, **kwargs: Any) -> Events:
        events = Events(server.url + path, **kwargs)
        opened.append(events)
        return events

    yield open_events
    for events in opened:
        events.close()


def raw_lines(url: str, headers: dict[str, str], until: float) -> list[str]:
    """The response's lines (comments included) until ``until`` seconds have passed."""
    lines: list[str] = []
    deadline = time.monotonic() + until
    with httpx.stream("GET", url, headers=headers, timeout=10) as response:
        assert response.status_code == 200
        for line in response.iter_lines():
            lines.append(line)
            if time.monotonic() > deadline:
                break
    return lines


def state(server: DemoServer) -> dict[str, Any]:
    return httpx.get(server.url + "/_sse_state", timeout=10).json()


def wait_for(condition: Any, timeout: float = 15.0) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value or time.monotonic() > deadline:
            return value
        time.sleep(0.1)


def test_the_first_event_is_the_put_with_the_version_as_its_id(server, admin, sse):
    pk = admin.add_dog("Rex", "Beagle", 3)
    events = sse(f"/plain-dog/{pk}")
    assert events.content_type.startswith("text/event-stream")
    assert events.cache_control == "no-cache"
    event, frame = events.next_record()
    assert frame["type"] == "put" and frame["id"] == pk
    assert frame["value"] == {"id": pk, "name": "Rex", "breed": "Beagle", "age": 3}
    assert event.id == json.dumps(frame["version"]), "the id is the version, as the frame writes it"
    assert float(event.id) == frame["version"]


def test_a_live_change_and_a_delete_arrive_as_events_with_growing_ids(server, admin, sse):
    pk = admin.add_dog("Luna", "Collie", 5)
    events = sse(f"/plain-dog/{pk}")
    first, _ = events.next_record()
    admin.change_dog(pk, "Luna Lovegood", "Collie", 6)
    changed, frame = events.next_record()
    assert frame["type"] == "put" and frame["value"]["name"] == "Luna Lovegood" and frame["value"]["age"] == 6
    assert float(changed.id) > float(first.id)
    admin.delete_dog(pk)
    deleted, frame = events.next_record()
    assert frame["type"] == "delete" and frame["id"] == pk and "value" not in frame
    assert float(deleted.id) == frame["version"] > float(changed.id)


def test_the_collection_path_sends_the_dump_then_changes(server, admin, sse):
    pk = admin.add_dog("Pip", "Pug", 1)
    events = sse("/plain-dog/")
    shown = set()
    while pk not in shown:
        _, frame = events.next_record()
        shown.add(frame["id"])
    admin.change_dog(pk, "Pip Squeak", "Pug", 2)
    while True:
        _, frame = events.next_record()
        if frame["id"] == pk and frame["value"]["name"] == "Pip Squeak":
            break


def test_last_event_id_resumes_with_only_what_changed_after_it(server, admin, sse):
    pk = admin.add_dog("Max", "Boxer", 4)
    events = sse(f"/plain-dog/{pk}")
    seen, _ = events.next_record()
    events.close()

    admin.change_dog(pk, "Max One", "Boxer", 4)
    admin.change_dog(pk, "Max Two", "Boxer", 5)
    resumed = sse(f"/plain-dog/{pk}", headers={"Last-Event-ID": seen.id})
    event, frame = resumed.next_record()
    assert frame["type"] == "put" and frame["value"]["name"] == "Max Two", "the newest state, once"
    assert float(event.id) > float(seen.id)
    assert resumed.nothing(1.5), "no older state follows"

    # Resuming from the newest version: nothing to catch up on, then live changes.
    current = sse(f"/plain-dog/{pk}", headers={"Last-Event-ID": event.id})
    assert current.nothing(1.5)
    admin.change_dog(pk, "Max Three", "Boxer", 5)
    _, frame = current.next_record()
    assert frame["value"]["name"] == "Max Three"


def test_last_event_id_wins_over_since_in_the_query(server, admin, sse):
    pk = admin.add_dog("Ace", "Akita", 2)
    first, _ = sse(f"/plain-dog/{pk}").next_record()
    resumed = sse(f"/plain-dog/{pk}?since=0", headers={"Last-Event-ID": first.id})
    assert resumed.nothing(1.5), "since=0 in the query would have sent the record again"


def test_bad_resume_values_are_refused_with_400_json(server):
    for query, headers in (("", {"Last-Event-ID": "yesterday"}), ("?since=abc", {}), ("", {"Last-Event-ID": "nan"})):
        response = httpx.get(f"{server.url}/plain-dog/1{query}", headers={**EVENT_STREAM, **headers}, timeout=10)
        assert response.status_code == 400, (query, headers)
        assert response.headers["content-type"] == "application/json"
        assert "since" in response.json()["error"] or "Last-Event-ID" in response.json()["error"]


def test_the_wire_format_keep_alive_comments_and_pulse_events_without_id(server, admin):
    pk = admin.add_dog("Bolt", "Husky", 2)
    lines = raw_lines(f"{server.url}/dog/{pk}", EVENT_STREAM, until=KEEPALIVE * 6)
    assert lines[0].startswith(":"), "the response starts with a comment, before any event"
    fields = "\n".join(line for line in lines if not line.startswith(":"))
    events = [block.splitlines() for block in fields.split("\n\n") if block.strip()]
    put = next(event for event in events if '"type":"put"' in event[-1])
    assert len(put) == 2 and put[0].startswith("id: ") and put[1].startswith("data: {")
    pulses = [event for event in events if '"status":"connection active"' in event[-1]]
    assert pulses, "the demo's pulse goes out as an event"
    assert all(pulse == [pulse[-1]] and pulse[0].startswith("data: {") for pulse in pulses), "no id: on a pulse"

    idle = raw_lines(f"{server.url}/plain-dog/{pk}", EVENT_STREAM, until=KEEPALIVE * 6)
    assert idle.count(": keep-alive") >= 3, idle


def test_refusals_are_json_401_with_basic_and_403(server):
    anonymous = httpx.get(f"{server.url}/private-dog/1", headers=EVENT_STREAM, timeout=10)
    assert anonymous.status_code == 401
    assert anonymous.headers["www-authenticate"].startswith("Basic")
    assert anonymous.json()["error"]

    wrong = httpx.get(f"{server.url}/plain-dog/1", headers=EVENT_STREAM, auth=(ADMIN_USER, "wrong"), timeout=10)
    assert wrong.status_code == 401, "wrong credentials are refused even on a public resource"

    reader = httpx.get(f"{server.url}/private-dog/1", headers=EVENT_STREAM, auth=(READER, READER_PASSWORD), timeout=10)
    assert reader.status_code == 403
    assert reader.headers["content-type"] == "application/json"

    missing = httpx.get(f"{server.url}/plain-dog/not-a-number", headers=EVENT_STREAM, timeout=10)
    assert missing.status_code == 404


def test_basic_auth_with_the_permission_streams(server, admin, sse):
    pk = admin.add_dog("Kira", "Shiba", 3)
    events = sse(f"/private-dog/{pk}", auth=(ADMIN_USER, ADMIN_PASSWORD))
    _, frame = events.next_record()
    assert frame["value"]["name"] == "Kira"


def test_a_stream_that_ends_ends_the_response(server, sse):
    events = sse("/two-then-done/1")
    assert [json.loads(events.next().data) for _ in range(2)] == [{"n": 1}, {"n": 2}]
    with pytest.raises(AssertionError, match="the stream ended"):
        events.next()


def test_clients_that_leave_leave_no_listener_and_no_stream(server, admin, sse):
    pk = admin.add_dog("Ghost", "Greyhound", 7)
    assert wait_for(lambda: state(server)["listeners"] == {}), "other tests' clients are gone"
    streams_before = state(server)["streams"]
    clients = [sse(f"/dog/{pk}") for _ in range(5)] + [sse("/plain-dog/")]
    for client in clients:
        client.next_record()
    during = state(server)
    assert sum(during["listeners"].values()) == 6 and len(during["listeners"]) == 2
    assert during["streams"] == streams_before + 6
    for client in clients:
        client.close()

    def cleaned_up() -> bool:
        now = state(server)
        return now["listeners"] == {} and now["streams"] == streams_before

    assert wait_for(cleaned_up), f"a departed client left something behind: {state(server)}"
    # And the record still streams to a new client.
    admin.change_dog(pk, "Ghost Two", "Greyhound", 7)
    _, frame = sse(f"/plain-dog/{pk}").next_record()
    assert frame["value"]["name"] == "Ghost Two"


def test_a_user_who_loses_the_permission_gets_a_close_event_and_the_stream_ends(server, admin, sse):
    pk = admin.add_dog("Watched", "Corgi", 2)
    events = sse(f"/private-dog/{pk}", auth=(WATCHER, WATCHER_PASSWORD))
    _, frame = events.next_record()
    assert frame["value"]["name"] == "Watched"
    run_script(
        f"from django.contrib.auth.models import User\nUser.objects.get(username={WATCHER!r}).user_permissions.clear()",
        server.env,
    )
    closing = events.next(timeout=15)
    assert closing.event == "close"
    assert json.loads(closing.data) == {"code": 3003, "reason": "Forbidden"}
    with pytest.raises(AssertionError, match="the stream ended"):
        events.next()
    refused = httpx.get(
        f"{server.url}/private-dog/{pk}", headers=EVENT_STREAM, auth=(WATCHER, WATCHER_PASSWORD), timeout=10
    )
    assert refused.status_code == 403, "the browser's reconnect is refused too"


def threads_of(server: DemoServer) -> int:
    assert server.process is not None
    status = Path(f"/proc/{server.process.pid}/status").read_text()
    return int(next(line.split()[1] for line in status.splitlines() if line.startswith("Threads:")))


def test_two_hundred_open_streams_take_no_thread_each(server, admin):
    pk = admin.add_dog("Crowd", "Beagle", 1)
    sockets = []
    try:
        with socket.create_connection(("127.0.0.1", server.port), timeout=10) as warm:
            warm.sendall(f"GET /plain-dog/{pk} HTTP/1.1\r\nHost: x\r\nAccept: text/event-stream\r\n\r\n".encode())
            assert b'"type":"put"' in read_until(warm, b'"type":"put"')
        before = threads_of(server)
        for _ in range(200):
            sock = socket.create_connection(("127.0.0.1", server.port), timeout=10)
            sock.sendall(f"GET /plain-dog/{pk} HTTP/1.1\r\nHost: x\r\nAccept: text/event-stream\r\n\r\n".encode())
            sockets.append(sock)
        for sock in sockets:
            assert b'"type":"put"' in read_until(sock, b'"type":"put"')
        assert threads_of(server) <= before + 2, "streams are served on the event loop, not by threads"
        assert sum(state(server)["listeners"].values()) >= 200
    finally:
        for sock in sockets:
            sock.close()
    assert wait_for(lambda: state(server)["listeners"] == {})


def read_until(sock: socket.socket, marker: bytes) -> bytes:
    data = b""
    deadline = time.monotonic() + 15
    while marker not in data and time.monotonic() < deadline:
        chunk = sock.recv(65536)
        if not chunk:
            break
        data += chunk
    return data
