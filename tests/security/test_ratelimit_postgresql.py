"""The request-limit and websocket-admission tests again, in production's stores: django-axes' attempts
in PostgreSQL (its migrations run by `migrate`, as pytest-django creates the test database) and the
token-failure counters in Redis (T4DM_CACHE_URL), in a pytest process whose DATABASE_URL is the
machine's PostgreSQL."""

from __future__ import annotations

import pytest

from tests.platform import REDIS_URL, skip_or_fail
from tests.rerun import rerun_on_postgresql

pytestmark = pytest.mark.production


def test_the_limits_hold_on_postgresql_and_redis():
    import redis

    cache_url = REDIS_URL + "/11"
    try:
        redis.Redis.from_url(cache_url, socket_connect_timeout=3).ping()
    except redis.RedisError as exc:
        skip_or_fail(f"Redis is not reachable at {REDIS_URL}: {exc}")
    done, summary = rerun_on_postgresql(
        "tests/security/test_ratelimit.py",
        "tests/security/test_ws_admission.py",
        db_prefix="t4dm_limits",
        extra_env={"T4DM_CACHE_URL": cache_url},
    )
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-2000:]
    assert "skipped" not in summary and "passed" in summary, summary
