"""REST on the demo as users run it: daphne in its own process, HTTP clients in threads,
and a real WebSocket client watching the same record."""

from __future__ import annotations

import json
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import httpx
from httpx_sse import connect_sse
from websockets.sync.client import connect

from tests.live import ADMIN_PASSWORD, ADMIN_USER

ADMIN = (ADMIN_USER, ADMIN_PASSWORD)


def record_frames(sock, quiet=1.5):
    """The record frames that arrive until none comes for ``quiet`` seconds (the demo's
    status pulse every second is skipped, and does not count as activity)."""
    frames = []
    deadline = time.monotonic() + quiet
    while (left := deadline - time.monotonic()) > 0:
        try:
            frame = json.loads(sock.recv(timeout=left))
        except TimeoutError:
            break
        if "status" not in frame:
            frames.append(frame)
            deadline = time.monotonic() + quiet
    return frames


def test_the_demo_answers_rest_on_the_websocket_path_and_django_pages_elsewhere(demo_server):
    with httpx.Client(base_url=demo_server.url, timeout=10) as http:
        record = http.get("/dog/341")
        assert (record.status_code, record.headers["content-type"]) == (200, "application/json")
        with connect(demo_server.ws_url + "/dog/341", origin=demo_server.url, open_timeout=5) as sock:
            put = json.loads(sock.recv(timeout=5))
        assert put["value"] == record.json()
        assert {341, 342, 343} <= {dog["id"] for dog in http.get("/dog/").json()}
        page = http.get("/dogs/341/")
        assert page.status_code == 200 and "text/html" in page.headers["content-type"]
        assert http.get("/dog/999999").status_code == 404


def test_anyone_reads_the_demo_dogs_but_only_the_admin_writes(demo_server):
    with httpx.Client(base_url=demo_server.url, timeout=10) as http:
        refused = http.patch("/dog/342", json={"name": "Hacked"})
        assert refused.status_code == 401
        assert refused.headers["www-authenticate"].startswith("Basic")
        wrong = http.patch("/dog/342", json={"name": "Hacked"}, auth=(ADMIN_USER, "wrong"))
        assert wrong.status_code == 401
        created = http.post("/dog/", json={"name": "Posted", "breed": "Pug"}, auth=ADMIN)
        assert created.status_code == 201
        location = created.headers["location"]
        assert http.get(location).json() == created.json()
        assert http.delete(location, auth=ADMIN).status_code == 204
        assert http.get(location).status_code == 404
        assert http.get("/dog/342").json()["name"] != "Hacked"


def test_the_admin_session_writes_with_its_csrf_token_only(demo_server, admin):
    cookies = {cookie.name: cookie.value for cookie in admin.cookies}
    with httpx.Client(base_url=demo_server.url, timeout=10, cookies=cookies) as http:
        pk = http.post("/dog/", json={"name": "Session"}, headers={"X-CSRFToken": cookies["csrftoken"]}).json()["id"]
        refused = http.patch(f"/dog/{pk}", json={"name": "No token"})
        assert refused.status_code == 403
        assert "CSRF" in refused.json()["error"]
        accepted = http.patch(f"/dog/{pk}", json={"name": "Token"}, headers={"X-CSRFToken": cookies["csrftoken"]})
        assert (accepted.status_code, accepted.json()["name"]) == (200, "Token")


class EventWatcher(threading.Thread):
    """An event-stream client of ``url`` in a thread: keeps the record states (``put``
    and ``delete`` events) until ``stop()``. The demo's pulse wakes it every second."""

    def __init__(self, base_url: str, url: str) -> None:
        super().__init__(daemon=True)
        self.base_url, self.url = base_url, url
        self.states: list[dict] = []
        self.ready, self.stopping = threading.Event(), threading.Event()

    def run(self) -> None:
        with httpx.Client(base_url=self.base_url, timeout=httpx.Timeout(30, read=None)) as client:
            with connect_sse(client, "GET", self.url) as source:
                self.ready.set()
                for event in source.iter_sse():
                    data = json.loads(event.data)
                    if data.get("type") in ("put", "delete"):
                        assert event.id == str(data["version"]) or float(event.id) == data["version"]
                        self.states.append(data)
                    if self.stopping.is_set():
                        return

    def stop(self) -> list[dict]:
        self.stopping.set()
        self.join(timeout=10)
        return self.states


def test_concurrent_patches_from_threads_leave_the_watching_socket_and_event_stream_on_the_stored_row(demo_server):
    with httpx.Client(base_url=demo_server.url, timeout=30) as http:
        pk = http.post("/dog/", json={"name": "Busy", "age": 0}, auth=ADMIN).json()["id"]
    events = EventWatcher(demo_server.url, f"/dog/{pk}")
    events.start()
    assert events.ready.wait(10)
    with connect(demo_server.ws_url + f"/dog/{pk}", origin=demo_server.url, open_timeout=5) as sock:
        assert record_frames(sock, quiet=1.5)[0]["value"]["name"] == "Busy"

        def patch(n):
            body = {"age": n} if n % 2 else {"name": f"Busy {n}"}
            with httpx.Client(base_url=demo_server.url, timeout=30) as http:
                return http.patch(f"/dog/{pk}", json=body, auth=ADMIN).status_code

        with ThreadPoolExecutor(max_workers=6) as pool:
            statuses = list(pool.map(patch, range(1, 25)))
        assert statuses == [200] * 24
        frames = record_frames(sock, quiet=3)
    states = events.stop()
    with httpx.Client(base_url=demo_server.url, timeout=10) as http:
        stored = http.get(f"/dog/{pk}").json()
    assert stored["name"].startswith("Busy ") and stored["age"] % 2 == 1, "both fields' last PATCH stayed"
    for seen in (frames, states):
        assert seen and seen[-1]["value"] == stored, "a watcher did not end on the stored row"
        assert [frame["version"] for frame in seen] == sorted(frame["version"] for frame in seen)
