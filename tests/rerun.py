"""Rerun test modules in a child pytest process whose DATABASE_URL is the machine's PostgreSQL, for tests
that hold the same rules on production's stores (pytest-django creates and drops its own test database
there)."""

from __future__ import annotations

import os
import secrets
import subprocess
import sys

from tests.platform import PG_URL, ROOT, skip_or_fail


def rerun_on_postgresql(
    *test_files: str, db_prefix: str, extra_env: dict[str, str] | None = None
) -> tuple[subprocess.CompletedProcess, str]:
    """Skip (or fail under T4DM_REQUIRE_SERVICES=1) when PostgreSQL is unreachable; otherwise run
    `test_files` there and return the finished process and pytest's summary line."""
    import psycopg

    try:
        psycopg.connect(PG_URL, connect_timeout=3).close()
    except psycopg.OperationalError as exc:
        skip_or_fail(f"PostgreSQL is not reachable at {PG_URL}: {exc}")
    env = {
        **os.environ,
        # pytest-django makes test_<name> and drops it after: a fresh name per run.
        "DATABASE_URL": PG_URL.rsplit("/", 1)[0] + f"/{db_prefix}_{secrets.token_hex(4)}",
        "T4DM_EXPECT_DB_VENDOR": "postgresql",
        **(extra_env or {}),
    }
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *test_files],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    summary = done.stdout.strip().splitlines()[-1] if done.stdout.strip() else done.stderr[-2000:]
    return done, summary
