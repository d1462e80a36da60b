"""A new project built from exactly the README's setup snippets ("Set up in a new
project", read from README.md by their ``<!-- setup: ... -->`` markers) serves pushes
under daphne and uvicorn: a save in another process (``manage.py shell -c``) reaches an
open WebSocket on the Redis layer, also from a Resource in ``consumers.py``; on the
in-memory layer (also under ``runserver``) an admin save in the server arrives at once
and a shell save arrives from the change log, with one warning in the shell saying so."""

from __future__ import annotations

import base64
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from websockets.sync.client import ClientConnection, connect

from tests.conftest import REDIS_URL, redis_available
from tests.live import ADMIN_PASSWORD, ADMIN_USER, DAPHNE_LIMITS, UVICORN_LIMITS, AdminClient, free_port, stop_process

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"

DOG_MODEL = """from django.db import models


class Dog(models.Model):
    name = models.CharField(max_length=100)
    breed = models.CharField(max_length=100, blank=True)
    age = models.IntegerField(default=0)
"""
DOG_ADMIN = "from django.contrib import admin\n\nfrom .models import Dog\n\nadmin.site.register(Dog)\n"


def readme_snippet(name: str) -> str:
    """The fenced block right after ``<!-- setup: name -->`` in README.md."""
    match = re.search(rf"<!-- setup: {re.escape(name)} -->\n```[a-z]*\n(.*?)\n```", README.read_text(), re.DOTALL)
    assert match, f"README.md has no snippet marked <!-- setup: {name} -->"
    return match.group(1) + "\n"


def run(args: list[str], cwd: Path, env: dict[str, str], timeout: float = 180) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    assert result.returncode == 0, f"{args} failed:\n{result.stdout}\n{result.stderr}"
    return result


def base_env(project: Path) -> dict[str, str]:
    """The shared venv's tools, with this checkout's harper_resources importable (as if
    installed) and the new project first on the path."""
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("DJANGO_", "HARPER_RESOURCES_", "REDIS_", "DATABASE_URL"))
    }
    env.update(
        PATH=f"{Path(sys.executable).parent}:{env.get('PATH', '/usr/bin:/bin')}",
        PYTHONPATH=f"{project}:{ROOT}",
        PYTHONUNBUFFERED="1",
        DJANGO_SUPERUSER_USERNAME=ADMIN_USER,
        DJANGO_SUPERUSER_PASSWORD=ADMIN_PASSWORD,
        DJANGO_SUPERUSER_EMAIL="admin@example.com",
    )
    return env


@pytest.fixture(scope="module")
def template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``startproject mysite``, ``startapp dogs`` with a Dog model and its admin, the
    README's resources.py, settings and asgi.py, ``migrate`` as the README says, and a
    superuser: built once, copied by each test."""
    project = tmp_path_factory.mktemp("fresh") / "mysite"
    project.mkdir()
    env = base_env(project)
    run([sys.executable, "-m", "django", "startproject", "mysite", str(project)], project, env)
    run([sys.executable, "manage.py", "startapp", "dogs"], project, env)
    (project / "dogs" / "models.py").write_text(DOG_MODEL)
    (project / "dogs" / "admin.py").write_text(DOG_ADMIN)
    (project / "dogs" / "resources.py").write_text(readme_snippet("dogs/resources.py"))
    settings = project / "mysite" / "settings.py"
    settings.write_text(settings.read_text() + "\n" + readme_snippet("settings.py"))
    (project / "mysite" / "asgi.py").write_text(readme_snippet("asgi.py"))
    run([sys.executable, "manage.py", "makemigrations", "dogs"], project, env)
    commands = [shlex.split(line.partition("#")[0]) for line in readme_snippet("run").splitlines()]
    migrate = [command for command in commands if command[:3] == ["python", "manage.py", "migrate"]]
    assert migrate == [["python", "manage.py", "migrate"]]
    run([sys.executable, "manage.py", "migrate"], project, env)
    run([sys.executable, "manage.py", "createsuperuser", "--noinput"], project, env)
    run(
        [sys.executable, "manage.py", "shell", "-c", "from dogs.models import Dog; Dog.objects.create(name='Rex')"],
        project,
        env,
    )
    return project


def server_command(server: str, port: int) -> list[str]:
    """The README's runserver, daphne or uvicorn line, on 127.0.0.1:port (the servers with
    docs/deployment.md's limits)."""
    if server == "runserver":
        (line,) = [line for line in readme_snippet("run").splitlines() if "manage.py runserver" in line]
        assert shlex.split(line.partition("#")[0]) == ["python", "manage.py", "runserver"]
        return [sys.executable, "manage.py", "runserver", "--noreload", f"127.0.0.1:{port}"]
    (line,) = [line for line in readme_snippet("run").splitlines() if line.startswith(f"{server} ")]
    _program, application = shlex.split(line.partition("#")[0])
    assert application == "mysite.asgi:application"
    if server == "daphne":
        return [
            str(Path(sys.executable).parent / "daphne"),
            "-b",
            "127.0.0.1",
            "-p",
            str(port),
            *DAPHNE_LIMITS,
            application,
        ]
    return [sys.executable, "-m", "uvicorn", "--host", "127.0.0.1", "--port", str(port), *UVICORN_LIMITS, application]


class Project:
    """A copy of the template project, with a server of its own once ``serve()`` ran."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.env = base_env(path)
        self.process: subprocess.Popen[bytes] | None = None
        self.log: Any = None  # the open log file, once started
        self.port = 0

    def use_redis(self) -> None:
        """The README's Redis snippet after the in-memory one, with a key prefix of this
        test's own (other runs share the Redis)."""
        snippet = readme_snippet("settings.py redis").replace("redis://127.0.0.1:6379/0", REDIS_URL)
        prefix = f"harper-fresh-{uuid.uuid4().hex[:8]}"
        settings = self.path / "mysite" / "settings.py"
        settings.write_text(
            settings.read_text() + "\n" + snippet + f'CHANNEL_LAYERS["default"]["CONFIG"]["prefix"] = {prefix!r}\n'
        )

    def serve(self, server: str) -> None:
        self.port = free_port()
        self.log_path = self.path / "server.log"
        self.log = open(self.log_path, "wb")
        self.process = subprocess.Popen(
            server_command(server, self.port), cwd=self.path, env=self.env, stdout=self.log, stderr=subprocess.STDOUT
        )
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            assert self.process.poll() is None, f"{server} exited:\n{self.log_path.read_text()}"
            try:
                with connect(f"ws://127.0.0.1:{self.port}/nowhere", open_timeout=2) as sock:
                    sock.recv(timeout=5)
            except Exception as error:
                if "4404" in str(error):
                    return
                time.sleep(0.2)
        raise AssertionError(f"{server} did not answer within 60 s:\n{self.log_path.read_text()}")

    def stop(self) -> None:
        stop_process(self.process, self.log)

    def socket(self, path: str) -> ClientConnection:
        login = base64.b64encode(f"{ADMIN_USER}:{ADMIN_PASSWORD}".encode()).decode()
        return connect(f"ws://127.0.0.1:{self.port}{path}", additional_headers={"Authorization": f"Basic {login}"})

    def shell(self, code: str) -> subprocess.CompletedProcess[str]:
        """``manage.py shell -c code``: another process that saves and exits."""
        return run([sys.executable, "manage.py", "shell", "-c", code], self.path, self.env)


@pytest.fixture
def project(template: Path, tmp_path: Path) -> Iterator[Project]:
    copy = tmp_path / "mysite"
    shutil.copytree(template, copy, ignore=shutil.ignore_patterns("__pycache__"))
    made = Project(copy)
    yield made
    made.stop()


def next_put(sock: ClientConnection, timeout: float = 15) -> dict:
    """The next ``put`` frame (other frames skipped); fails after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        frame = json.loads(sock.recv(timeout=max(deadline - time.monotonic(), 0.01)))
        if frame.get("type") == "put":
            return frame


SAVE_REX = "from dogs.models import Dog; rex = Dog.objects.get(name='Rex'); rex.age = {age}; rex.save()"


def redis_or_skip() -> None:
    if not redis_available():
        from tests.conftest import missing

        missing(f"Redis at {REDIS_URL}")


def test_the_readme_install_line_names_extras_the_package_has() -> None:
    (line,) = readme_snippet("install").splitlines()
    extras = re.fullmatch(r'pip install "harper-resources\[([a-z,]+)\]"', line)
    assert extras, line
    pyproject = (ROOT / "pyproject.toml").read_text()
    for extra in extras.group(1).split(","):
        assert re.search(rf"^{extra} = \[", pyproject, re.MULTILINE), extra


@pytest.mark.parametrize("server", ["daphne", "uvicorn"])
def test_a_save_in_another_process_reaches_a_socket_over_redis(project: Project, server: str) -> None:
    redis_or_skip()
    project.use_redis()
    project.serve(server)
    with project.socket("/dog/1") as sock:
        assert next_put(sock)["value"]["name"] == "Rex"
        shell = project.shell(SAVE_REX.format(age=5))
        put = next_put(sock)
    assert put["value"] == {"id": 1, "name": "Rex", "breed": "", "age": 5}
    assert "serves no WebSockets" not in shell.stderr


def test_a_resource_in_consumers_py_broadcasts_saves_of_another_process(project: Project) -> None:
    """The Channels convention: the same resource in dogs/consumers.py, routed from there."""
    redis_or_skip()
    (project.path / "dogs" / "resources.py").rename(project.path / "dogs" / "consumers.py")
    asgi = project.path / "mysite" / "asgi.py"
    asgi.write_text(asgi.read_text().replace("from dogs.resources import", "from dogs.consumers import"))
    project.use_redis()
    check = run([sys.executable, "manage.py", "check"], project.path, project.env)
    assert "W004" not in check.stdout + check.stderr
    project.serve("uvicorn")
    with project.socket("/dog/1") as sock:
        next_put(sock)
        project.shell(SAVE_REX.format(age=6))
        assert next_put(sock)["value"]["age"] == 6


def test_a_model_resource_defined_in_asgi_py_is_warned_about_by_check(project: Project) -> None:
    asgi = project.path / "mysite" / "asgi.py"
    (project.path / "dogs" / "resources.py").unlink()
    resource = readme_snippet("dogs/resources.py").replace("from .models", "from dogs.models")
    asgi.write_text(asgi.read_text().replace("from dogs.resources import DogResource\n", resource))
    check = run([sys.executable, "manage.py", "check"], project.path, project.env)
    assert "harper_resources.W004" in check.stderr and "mysite.asgi.DogResource" in check.stderr


@pytest.mark.parametrize("server", ["runserver", "daphne", "uvicorn"])
def test_on_the_in_memory_layer_server_saves_arrive_at_once_and_shell_saves_from_the_log(
    project: Project, server: str
) -> None:
    project.serve(server)
    admin = AdminClient(f"http://127.0.0.1:{project.port}")
    with project.socket("/dog/1") as sock:
        next_put(sock)
        admin.change_dog(1, "Rex", "Beagle", 7)
        assert next_put(sock, timeout=5)["value"]["breed"] == "Beagle"
        shell = project.shell(SAVE_REX.format(age=8) + "; rex.age = 9; rex.save()")
        assert [next_put(sock)["value"]["age"] for _ in range(2)] == [8, 9]
    warnings = [line for line in shell.stderr.splitlines() if "serves no WebSockets" in line]
    assert len(warnings) == 1, shell.stderr
    assert "from the change log within about 1.0 s" in warnings[0]
