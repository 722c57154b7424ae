"""The ingest and live-view tests again, on the real PostgreSQL server.

On PostgreSQL the ingest endpoint hands the request body to the database, which parses and checks it
(experiments/ingest.py); tests/experiments/test_ingest.py holds the rules every database must apply
alike. This reruns that module and the websocket consumer's in a pytest process whose DATABASE_URL is
the machine's PostgreSQL (pytest-django creates and drops its own test database there)."""

from __future__ import annotations

import pytest

from tests.rerun import rerun_on_postgresql

pytestmark = pytest.mark.production


def test_the_ingest_rules_hold_on_postgresql():
    done, summary = rerun_on_postgresql(
        "tests/experiments/test_ingest.py",
        "tests/experiments/test_consumer.py",
        "tests/tracking/test_series_shape.py",  # the rollups' extreme steps, kept by the SQL statement
        "tests/tracking/test_ingest_statement.py",  # ties, repeats, latest, a batch that waited for the lock
        db_prefix="t4dm_ingest",
    )
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-2000:]
    assert "skipped" not in summary, summary  # the PostgreSQL-only test ran too
