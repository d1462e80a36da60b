"""A real demo server (daphne in its own process) and an HTTP client for its admin."""

from __future__ import annotations

import http.cookiejar
import os
import re
import shutil
import socket
import subprocess
import sys
import time
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
ADMIN_USER, ADMIN_PASSWORD = "admin", "admin-password-for-tests"

#: The limits docs/deployment.md tells every deployment to run each server with (a test
#: checks the page shows them as they are here).
UVICORN_LIMITS = [
    "--ws-max-size",
    "1048576",
    "--ws-per-message-deflate",
    "false",
    "--ws",
    "harper_resources.servers:UvicornWebSocketProtocol",
]
#: And the shutdown bound the same page asks for (open event streams would hold a restart forever).
UVICORN_SHUTDOWN = ["--timeout-graceful-shutdown", "5"]
DAPHNE_LIMITS = ["--websocket-max-message-size", "1048576", "--websocket-max-frame-size", "1048576"]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def stop_process(process: subprocess.Popen[bytes] | None, log: Any) -> None:
    """Terminate a server ``process`` (killed if it is still there after 10 s) and close
    its ``log`` file. Does nothing for a process that was never started."""
    if process is None:
        return
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
    log.close()


class DemoServer:
    """``manage.py rundemo --no-serve`` on a fresh SQLite file, then daphne on a free port.

    ``env`` extends the server's environment (``REDIS_URL``, say); ``server`` is daphne or
    uvicorn; ``application`` another ASGI app to serve (tests.live_asgi adds test-only
    routes to the demo's). Stop with ``stop()``.
    """

    def __init__(
        self,
        workdir: Path,
        env: dict[str, str] | None = None,
        server: str = "daphne",
        application: str = "project.asgi:application",
    ) -> None:
        self.workdir = workdir
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.ws_url = f"ws://127.0.0.1:{self.port}"
        self.env = {
            **os.environ,
            "DJANGO_SETTINGS_MODULE": "project.settings",
            "DATABASE_URL": f"sqlite:///{workdir / 'db.sqlite3'}",
            "DJANGO_SUPERUSER_USERNAME": ADMIN_USER,
            "DJANGO_SUPERUSER_PASSWORD": ADMIN_PASSWORD,
            "PYTHONUNBUFFERED": "1",
            **(env or {}),
        }
        self.env.pop("DJANGO_DEBUG", None)
        self.server = server
        self.application = application
        self.log_path = workdir / f"server-{self.port}.log"
        self.process: subprocess.Popen[bytes] | None = None
        self.log: Any = None  # the open log file, once started

    def prepare(self) -> DemoServer:
        """Migrate the database and add the sample dogs and the admin user."""
        subprocess.run(
            [sys.executable, "manage.py", "rundemo", "--no-serve"],
            cwd=ROOT,
            env=self.env,
            check=True,
            capture_output=True,
        )
        return self

    def command(self) -> list[str]:
        """The server's command line, with the limits docs/deployment.md recommends."""
        if self.server == "uvicorn":
            host = ["--host", "127.0.0.1", "--port", str(self.port)]
            return [sys.executable, "-m", "uvicorn", *host, *UVICORN_LIMITS, *UVICORN_SHUTDOWN]
        daphne = shutil.which("daphne", path=str(Path(sys.executable).parent)) or "daphne"
        return [daphne, "-b", "127.0.0.1", "-p", str(self.port), *DAPHNE_LIMITS]

    def start(self, prepare: bool = True) -> DemoServer:
        if prepare:
            self.prepare()
        self.log = open(self.log_path, "wb")
        self.process = subprocess.Popen(
            [*self.command(), self.application],
            cwd=ROOT,
            env=self.env,
            stdout=self.log,
            stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"daphne exited: {self.log_path.read_text()}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.5):
                    return self
            except OSError:
                time.sleep(0.1)
        self.stop()
        raise RuntimeError("daphne did not start listening within 30 s")

    def stop(self) -> None:
        stop_process(self.process, self.log)

    def logs(self) -> str:
        return self.log_path.read_text(errors="replace")


def run_script(code: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """Run ``code`` in a new Django process (``manage.py shell -c``) that exits when done."""
    return subprocess.run(
        [sys.executable, "manage.py", "shell", "-c", code],
        cwd=ROOT,
        env=env,
        check=True,
        capture_output=True,
        text=True,
        timeout=120,
    )


class AdminClient:
    """Logs into the Django admin over HTTP and edits dogs through its forms, as a person would."""

    def __init__(self, base_url: str) -> None:
        self.base_url = base_url
        self.cookies = http.cookiejar.CookieJar()
        self.opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(self.cookies))
        self.login()

    def _csrf(self) -> str:
        return next(cookie.value for cookie in self.cookies if cookie.name == "csrftoken")

    def get(self, path: str) -> str:
        with self.opener.open(self.base_url + path, timeout=10) as response:
            return response.read().decode()

    def post(self, path: str, fields: dict[str, str]) -> str:
        self.get(path)  # sets the CSRF cookie
        data = urllib.parse.urlencode({**fields, "csrfmiddlewaretoken": self._csrf()}).encode()
        request = urllib.request.Request(self.base_url + path, data=data, headers={"Referer": self.base_url + path})
        with self.opener.open(request, timeout=10) as response:
            body = response.read().decode()
            if "errornote" in body or "errorlist" in body:
                raise AssertionError(f"the admin refused the form at {path}")
            return response.geturl()

    def login(self) -> None:
        final = self.post("/admin/login/?next=/admin/", {"username": ADMIN_USER, "password": ADMIN_PASSWORD})
        assert final.endswith("/admin/"), "admin login failed"

    def add_dog(self, name: str, breed: str = "", age: int = 0) -> int:
        final = self.post("/admin/dogs/dog/add/", {"name": name, "breed": breed, "age": str(age), "_continue": "1"})
        match = re.search(r"/admin/dogs/dog/(\d+)/change/", final)
        assert match, final
        return int(match.group(1))

    def change_dog(self, pk: int, name: str, breed: str = "", age: int = 0) -> None:
        self.post(f"/admin/dogs/dog/{pk}/change/", {"name": name, "breed": breed, "age": str(age), "_save": "1"})

    def delete_dog(self, pk: int) -> None:
        self.post(f"/admin/dogs/dog/{pk}/delete/", {"post": "yes"})
