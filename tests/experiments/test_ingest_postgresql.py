"""The ingest and live-view tests again, on the real PostgreSQL server.

On PostgreSQL the ingest endpoint hands the request body to the database, which parses and checks it
(experiments/ingest.py); tests/experiments/test_ingest.py holds the rules every database must apply
alike. This reruns that module and the websocket consumer's in a pytest process whose DATABASE_URL is
the machine's PostgreSQL (pytest-django creates and drops its own test database there)."""

from __future__ import annotations

import os
import secrets
import subprocess
import sys
from pathlib import Path

import pytest

from tests.platform import PG_URL, skip_or_fail

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.production


def test_the_ingest_rules_hold_on_postgresql():
    import psycopg

    try:
        psycopg.connect(PG_URL, connect_timeout=3).close()
    except psycopg.OperationalError as exc:
        skip_or_fail(f"PostgreSQL is not reachable at {PG_URL}: {exc}")
    env = {
        **os.environ,
        # pytest-django makes test_<name> and drops it after: a fresh name per run.
        "DATABASE_URL": PG_URL.rsplit("/", 1)[0] + f"/t4dm_ingest_{secrets.token_hex(4)}",
        "T4DM_EXPECT_DB_VENDOR": "postgresql",
    }
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-q",
            "-p",
            "no:cacheprovider",
            "tests/experiments/test_ingest.py",
            "tests/experiments/test_consumer.py",
        ],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    summary = done.stdout.strip().splitlines()[-1] if done.stdout.strip() else done.stderr[-2000:]
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-2000:]
    assert "skipped" not in summary, summary  # the PostgreSQL-only test ran too
