"""The transaction tests again, on PostgreSQL: commit and rollback semantics are the
database's, so they are checked on the database users deploy on, not only SQLite."""

from __future__ import annotations

import os
import subprocess
import sys

from tests.conftest import missing
from tests.live import ROOT

POSTGRES_URL = os.environ.get("HARPER_TEST_POSTGRES_URL", "postgres://postgres@127.0.0.1:5432/test")


def postgres_available() -> bool:
    import psycopg

    try:
        with psycopg.connect(POSTGRES_URL.replace("postgres://", "postgresql://"), connect_timeout=2):
            return True
    except psycopg.Error:
        return False


def test_the_broadcast_and_record_stream_tests_pass_on_postgresql():
    if not postgres_available():
        missing(f"PostgreSQL at {POSTGRES_URL}")
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-q",
            "-p",
            "no:cacheprovider",
            "tests/test_record_stream.py",
            "tests/test_versions.py",
            "tests/test_resume.py",
            "tests/test_capture.py",
            "tests/test_rest.py",  # row locks (select_for_update) exist only here
            "-k",
            "not redis",
        ],
        cwd=ROOT,
        env={**os.environ, "DATABASE_URL": POSTGRES_URL},
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-2000:]
    assert " passed" in result.stdout and "skipped" not in result.stdout.splitlines()[-1]
