"""The request-limit and websocket-admission tests again, in production's stores: django-axes' attempts
in PostgreSQL (its migrations run by `migrate`, as pytest-django creates the test database) and the
token-failure counters in Redis (T4DM_CACHE_URL), in a pytest process whose DATABASE_URL is the
machine's PostgreSQL."""

from __future__ import annotations

import os
import secrets
import subprocess
import sys
from pathlib import Path

import pytest

from tests.platform import PG_URL, REDIS_URL, skip_or_fail

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.production


def test_the_limits_hold_on_postgresql_and_redis():
    import psycopg
    import redis

    try:
        psycopg.connect(PG_URL, connect_timeout=3).close()
    except psycopg.OperationalError as exc:
        skip_or_fail(f"PostgreSQL is not reachable at {PG_URL}: {exc}")
    cache_url = REDIS_URL + "/11"
    try:
        redis.Redis.from_url(cache_url, socket_connect_timeout=3).ping()
    except redis.RedisError as exc:
        skip_or_fail(f"Redis is not reachable at {REDIS_URL}: {exc}")
    env = {
        **os.environ,
        # pytest-django makes test_<name> and drops it after: a fresh name per run.
        "DATABASE_URL": PG_URL.rsplit("/", 1)[0] + f"/t4dm_limits_{secrets.token_hex(4)}",
        "T4DM_CACHE_URL": cache_url,
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
            "tests/security/test_ratelimit.py",
            "tests/security/test_ws_admission.py",
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
    assert "skipped" not in summary and "passed" in summary, summary
