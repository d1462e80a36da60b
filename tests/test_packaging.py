"""What a user installs: the wheel's metadata (licence, extras, Python versions), code
that runs on every Python the package claims (3.10 and up), and modules an ``asgi.py``
imports that load before Django is set up."""

from __future__ import annotations

import ast
import shutil
import subprocess
import sys
import zipfile
from email.parser import Parser
from pathlib import Path

import pytest

from tests.conftest import missing

ROOT = Path(__file__).resolve().parent.parent

#: Where the project's Python code lives (the app, its tests, the demo, the benchmarks).
CODE = ["harper_resources", "tests", "project", "benchmarks", "manage.py"]


def test_code_runs_on_python_3_10() -> None:
    """vermin finds no API newer than 3.10 (``datetime.UTC``, ``asyncio.timeout``,
    ``TaskGroup``, ``tomllib``, ``typing.Self``, ``except*``, ...) in the project's code.
    ``str.decode`` is excluded: vermin takes ``bytes.decode`` for Python 2's."""
    vermin = shutil.which("vermin", path=str(Path(sys.executable).parent))
    if vermin is None:
        missing("vermin (requirements-dev.txt)")
    result = subprocess.run(
        [vermin, "--target=3.10-", "--violations", "--no-tips", "--exclude", "str.decode", *CODE],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_vermin_catches_an_api_newer_than_3_10(tmp_path: Path) -> None:
    """The check above would fail on the APIs a 3.11 habit brings in."""
    vermin = shutil.which("vermin", path=str(Path(sys.executable).parent))
    if vermin is None:
        missing("vermin (requirements-dev.txt)")
    for line in ("import datetime\nx = datetime.UTC\n", "import asyncio\nasyncio.timeout(1)\n", "import tomllib\n"):
        (tmp_path / "new.py").write_text(line)
        result = subprocess.run(
            [vermin, "--target=3.10-", "--violations", "--no-tips", str(tmp_path / "new.py")],
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert result.returncode != 0, (line, result.stdout)


def _bare_timeout_handlers(source: str) -> list[int]:
    """Lines of ``except TimeoutError`` around an ``asyncio.wait_for``: on 3.10 asyncio
    raises its own ``asyncio.TimeoutError``, which the builtin does not catch."""
    lines = []
    for node in ast.walk(ast.parse(source)):
        if not isinstance(node, ast.Try):
            continue
        waits = any(
            isinstance(call, ast.Call)
            and isinstance(call.func, ast.Attribute)
            and call.func.attr == "wait_for"
            and isinstance(call.func.value, ast.Name)
            and call.func.value.id == "asyncio"
            for statement in node.body
            for call in ast.walk(statement)
        )
        for handler in node.handlers if waits else ():
            caught = handler.type.elts if isinstance(handler.type, ast.Tuple) else [handler.type]
            if any(isinstance(name, ast.Name) and name.id == "TimeoutError" for name in caught):
                lines.append(handler.lineno)
    return lines


def test_asyncio_timeouts_are_caught_as_asyncio_timeout_error() -> None:
    found = {
        str(path.relative_to(ROOT)): lines
        for top in CODE
        for path in sorted((ROOT / top).rglob("*.py") if (ROOT / top).is_dir() else [ROOT / top])
        if (lines := _bare_timeout_handlers(path.read_text()))
    }
    assert found == {}
    wrong = "async def f(e):\n try:\n  await asyncio.wait_for(e.wait(), 1)\n except TimeoutError:\n  pass\n"
    assert _bare_timeout_handlers(wrong) == [4]
    assert _bare_timeout_handlers(wrong.replace("except TimeoutError", "except asyncio.TimeoutError")) == []


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    """``pip wheel`` of a copy of the package (no build/ left in the checkout), and its output."""
    source = tmp_path_factory.mktemp("source")
    for name in ("pyproject.toml", "README.md", "LICENSE"):
        shutil.copy(ROOT / name, source / name)
    shutil.copytree(
        ROOT / "harper_resources", source / "harper_resources", ignore=shutil.ignore_patterns("__pycache__")
    )
    out = tmp_path_factory.mktemp("wheel")
    result = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "-v", "-w", str(out), str(source)],
        capture_output=True,
        text=True,
        timeout=600,
    )
    if result.returncode != 0 and "setuptools" in result.stdout + result.stderr and "No matching" in result.stderr:
        missing("a package index with setuptools>=77 for pip's isolated build")
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    (built,) = out.glob("harper_resources-*.whl")
    return built, result.stdout + result.stderr


def test_wheel_metadata_states_licence_extras_and_pythons(wheel: tuple[Path, str]) -> None:
    built, _ = wheel
    with zipfile.ZipFile(built) as archive:
        names = archive.namelist()
        metadata_name = next(name for name in names if name.endswith(".dist-info/METADATA"))
        metadata = Parser().parsestr(archive.read(metadata_name).decode())
    assert metadata["License-Expression"] == "MIT"
    assert metadata.get_all("License-File") == ["LICENSE"]
    assert any(name.endswith(".dist-info/licenses/LICENSE") for name in names)
    assert "harper_resources/py.typed" in names
    assert {"daphne", "redis", "uvicorn"} <= set(metadata.get_all("Provides-Extra"))
    requires = metadata.get_all("Requires-Dist")
    assert any(r.startswith("daphne") and 'extra == "daphne"' in r for r in requires), requires
    assert any(r.startswith("channels-redis") and 'extra == "redis"' in r for r in requires), requires
    classifiers = metadata.get_all("Classifier")
    for version in ("3.10", "3.11", "3.12", "3.13"):
        assert f"Programming Language :: Python :: {version}" in classifiers
    assert "Framework :: Django :: 5.2" in classifiers
    assert metadata["Requires-Python"] == ">=3.10"


def test_building_does_not_warn_about_the_licence(wheel: tuple[Path, str]) -> None:
    """No ``project.license`` table (deprecated, an error from 2027) and no licence classifier."""
    _, output = wheel
    lines = [line for line in output.lower().splitlines() if "license" in line or "deprecat" in line]
    assert not [line for line in lines if "warn" in line or "deprecat" in line], lines


ASGI_MODULES = ["harper_resources", "harper_resources.routing", "harper_resources.auth", "harper_resources.consumers"]


def test_modules_an_asgi_py_imports_load_before_django_setup() -> None:
    """An ``asgi.py`` may import these above ``get_asgi_application()``; under daphne or
    uvicorn nothing has called ``django.setup()`` then, so they must not touch models."""
    code = (
        "import importlib, sys\n"
        "from django.apps import apps\n"
        f"for name in {ASGI_MODULES!r}:\n"
        "    importlib.import_module(name)\n"
        "assert not apps.ready, 'something set Django up'\n"
        "print('ok')\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code],
        cwd=ROOT,
        env={"PATH": "/usr/bin:/bin", "DJANGO_SETTINGS_MODULE": "tests.settings", "PYTHONPATH": str(ROOT)},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0 and result.stdout.strip() == "ok", result.stderr
