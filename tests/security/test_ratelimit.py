"""Request limits (issue 17 item 9): valid credentials are never refused; only failures are throttled.

- Refused bearer tokens (t4dm_site/ratelimit.py, a small cache-based counter) count per client address
  and per token prefix; past T4DM_TOKEN_RATE_LIMIT the refused ones get 429 with Retry-After, while a
  valid API token, session, worker secret or job token from the same address is served.
- Logins (the login page and the admin's) are limited by django-axes per (username, address) pair.

tests/security/test_ratelimit_postgresql.py reruns this module on PostgreSQL with the counters in Redis."""

from __future__ import annotations

import os

import pytest
from asgiref.sync import sync_to_async
from django.conf import settings as django_settings
from django.core.cache import cache
from django.db import connections

BAD = {"Authorization": "Bearer t4dm_guessguessguessguessguessguessguessgues"}
OTHER_BAD = {"Authorization": "Bearer t4dm_0therprefix0therprefix0therprefix0the"}  # another prefix


@pytest.fixture(autouse=True)
def _limits(settings):
    settings.LOGIN_RATE_LIMIT = 3
    settings.RATE_LIMIT_WINDOW_SECONDS = 600
    cache.clear()
    yield
    cache.clear()


def test_the_stores_are_the_ones_asked_for(db):
    """Under tests/security/test_ratelimit_postgresql.py: PostgreSQL (axes' attempts) and Redis (counters)."""
    from django.core.cache import caches
    from django.db import connection

    expected = os.environ.get("T4DM_EXPECT_DB_VENDOR")
    assert expected in (None, connection.vendor), f"ran on {connection.vendor}, expected {expected}"
    if expected == "postgresql":
        assert type(caches["default"]).__name__ == "RedisCache"


def _bearer(token: str) -> dict:
    return {"Authorization": f"Bearer {token}"}


def _heartbeat(client, secret: str, **extra):
    return client.post(
        "/api/v1/worker/heartbeat",
        {"name": "gpu0@box", "queue": "training"},
        content_type="application/json",
        headers=_bearer(secret),
        **extra,
    )


@pytest.fixture
def running_job(researcher, demo_config, django_capture_on_commit_callbacks):
    """A job with a live worker token (no Celery task is sent)."""
    from experiments.services import job_report_status, job_start

    with django_capture_on_commit_callbacks(execute=False):
        job = job_start(owner=researcher, config=demo_config)
    token = job.issue_token()
    job_report_status(job=job, status="running", worker="gpu0@box")
    return job, token


def test_thirty_bad_tokens_lock_out_only_bad_tokens_not_valid_credentials(client, people, running_job):
    """The default limit (30): the 31st bad token from an address gets 429; a valid API token, the
    worker's heartbeat (worker secret), its job token and a logged-in session from that address are
    served, before and after; bad tokens stay refused with 429."""
    assert django_settings.TOKEN_RATE_LIMIT == 30
    job, job_token = running_job
    for _ in range(30):
        assert client.get("/api/v1/jobs", headers=BAD).status_code == 401
    blocked = client.get("/api/v1/jobs", headers=BAD)
    assert blocked.status_code == 429 and 0 < int(blocked["Retry-After"]) <= 600
    error = blocked.json()["error"]
    assert error["code"] == "rate_limited" and error["details"]["retry_after"] == int(blocked["Retry-After"])

    owner = _bearer(people["owner"].raw_token)
    assert client.get("/api/v1/jobs", headers=owner).status_code == 200
    assert client.get("/v1/files", headers=owner).status_code == 200
    heartbeat = _heartbeat(client, django_settings.WORKER_SECRET)
    assert heartbeat.status_code == 200 and heartbeat.json()["name"] == "gpu0@box"
    spec = client.get(f"/api/v1/worker/jobs/{job.public_id}/spec", headers=_bearer(job_token))
    assert spec.status_code == 200
    session = client.__class__()
    session.force_login(people["other"])
    assert session.get("/api/v1/jobs").status_code == 200

    # Bad tokens are still refused, on every API, and a wrong worker secret too.
    for _ in range(3):
        assert client.get("/api/v1/jobs", headers=BAD).status_code == 429
    assert client.get("/api/2.0/mlflow/experiments/search", headers=BAD).status_code == 429
    assert _heartbeat(client, "not-the-secret").status_code == 429
    assert _heartbeat(client, django_settings.WORKER_SECRET).status_code == 200
    # Another address is not affected by this one's failures (with another token prefix: that one's
    # failures count too).
    assert client.get("/api/v1/jobs", headers=OTHER_BAD, REMOTE_ADDR="10.0.0.3").status_code == 401


def test_bad_tokens_are_limited_per_address_on_every_api(client, people, settings):
    settings.TOKEN_RATE_LIMIT = 4
    assert client.get("/api/v1/jobs", headers=BAD).status_code == 401
    assert client.get("/v1/files", headers=BAD).status_code == 401
    assert client.get("/api/2.0/mlflow/experiments/search", headers=BAD).status_code == 401
    assert _heartbeat(client, "t4dm_wrong").status_code == 401
    assert client.get("/v1/files", headers=BAD).status_code == 429
    assert client.get("/api/v1/jobs", headers=_bearer(people["owner"].raw_token)).status_code == 200
    # Job tokens are neither counted nor answered 429: a worker must see the 401 that fences it off.
    stale = _bearer("t4job_1_stale")
    for _ in range(6):
        assert (
            client.get("/api/v1/worker/jobs/job-001/spec", headers=stale, REMOTE_ADDR="10.0.0.4").status_code
            == 401
        )
    assert client.get("/api/v1/jobs", headers=OTHER_BAD, REMOTE_ADDR="10.0.0.4").status_code == 401


def test_guesses_at_one_token_prefix_are_limited_from_any_address(client, people, settings):
    """A token's first 12 characters are stored and shown to tell tokens apart; guesses that keep them
    count against that prefix wherever they come from. The real token with that prefix still works."""
    settings.TOKEN_RATE_LIMIT = 4
    real = people["owner"].raw_token
    guess = _bearer(real[:12] + "A" * (len(real) - 12))
    for n in range(4):
        assert client.get("/api/v1/jobs", headers=guess, REMOTE_ADDR=f"10.1.0.{n}").status_code == 401
    assert client.get("/api/v1/jobs", headers=guess, REMOTE_ADDR="10.1.0.99").status_code == 429
    assert client.get("/api/v1/jobs", headers=_bearer(real), REMOTE_ADDR="10.1.0.99").status_code == 200
    # Another prefix from a fresh address is a plain 401.
    assert client.get("/api/v1/jobs", headers=OTHER_BAD, REMOTE_ADDR="10.1.0.98").status_code == 401


def test_successful_requests_are_never_counted(client, people, settings):
    settings.TOKEN_RATE_LIMIT = 4
    good = _bearer(people["owner"].raw_token)
    for _ in range(10):
        assert client.get("/api/v1/jobs", headers=good).status_code == 200
    # 403 (wrong role) and 404 are not authentication failures either.
    evaluator = _bearer(people["evaluator"].raw_token)
    for _ in range(6):
        assert client.get("/api/v1/jobs", headers=evaluator).status_code == 403
    assert client.get("/api/v1/jobs", headers=BAD).status_code == 401


def test_behind_an_untrusted_proxy_one_bad_client_locks_out_nobody_else(
    client, people, running_job, settings
):
    """The documented proxy with T4DM_TRUSTED_PROXY_HOPS=0: every client shares the proxy's address. A
    client sending bad tokens exhausts that address's failure budget; everyone else's valid credentials
    (tokens, sessions, the workers' heartbeats) still pass — at worst a mistyped token gets 429 not 401."""
    settings.TOKEN_RATE_LIMIT = 4
    job, job_token = running_job
    proxy = {"REMOTE_ADDR": "10.9.9.9"}
    for n in range(10):
        client.get("/api/v1/jobs", headers=BAD, HTTP_X_FORWARDED_FOR=f"203.0.113.{n}", **proxy)
    assert client.get("/api/v1/jobs", headers=BAD, **proxy).status_code == 429
    for name in ("owner", "other", "admin"):
        response = client.get("/api/v1/jobs", headers=_bearer(people[name].raw_token), **proxy)
        assert response.status_code == 200, name
    assert _heartbeat(client, django_settings.WORKER_SECRET, **proxy).status_code == 200
    spec = client.get(f"/api/v1/worker/jobs/{job.public_id}/spec", headers=_bearer(job_token), **proxy)
    assert spec.status_code == 200
    browser = client.__class__(**proxy)
    browser.force_login(people["owner"])
    assert browser.get("/api/v1/jobs").status_code == 200
    assert browser.post("/login/", {"username": "oscar", "password": "pw-oscar"}).status_code == 302


# --- logins: django-axes -------------------------------------------------------------------------


def _login(client, username: str, password: str, path: str = "/login/", **extra):
    return client.post(path, {"username": username, "password": password}, **extra)


def test_a_locked_login_is_per_user_and_address(client, people):
    from axes.models import AccessAttempt

    assert _login(client, "olga", "wrong").status_code == 200  # the form again, with its error
    assert _login(client, "olga", "wrong").status_code == 200
    locked = _login(client, "olga", "wrong")  # the third failure (T4DM_LOGIN_RATE_LIMIT=3) locks the pair
    retry_after = int(locked["Retry-After"])
    assert locked.status_code == 429 and 540 <= retry_after <= 600  # a cool-off from the failure just made
    assert f"try again in {retry_after} s" in locked.content.decode()
    # Locked: even the right password from that address, on the login page and the admin's.
    assert _login(client, "olga", "pw-olga").status_code == 429
    assert _login(client, "olga", "pw-olga", path="/admin/login/").status_code == 429
    for _ in range(5):
        assert _login(client, "olga", "wrong").status_code == 429
    # The same user from another address, and another user from this one, still log in.
    assert _login(client.__class__(), "olga", "pw-olga", REMOTE_ADDR="10.0.0.2").status_code == 302
    assert _login(client.__class__(), "oscar", "pw-oscar").status_code == 302
    people["admin"].is_staff = True
    people["admin"].save(update_fields=["is_staff"])
    admin = _login(client.__class__(), "ada", "pw-ada", path="/admin/login/")
    assert admin.status_code == 302
    # The attempts are database rows, so every web process sees them; attempts while locked are not
    # recorded (each would append the request to the row), so a flood cannot grow it.
    attempt = AccessAttempt.objects.get(username="olga", ip_address="127.0.0.1")
    assert attempt.failures_since_start == 3
    # Reading the login page is never limited.
    assert client.get("/login/").status_code == 200


def test_a_successful_login_clears_the_pairs_failures(client, people):
    assert _login(client, "olga", "wrong").status_code == 200
    assert _login(client, "olga", "wrong").status_code == 200
    assert _login(client, "olga", "pw-olga").status_code == 302
    client.logout()
    assert _login(client, "olga", "wrong").status_code == 200
    assert _login(client, "olga", "wrong").status_code == 200
    assert _login(client, "olga", "pw-olga").status_code == 302


def test_login_lockouts_follow_the_trusted_proxy_setting(client, people, settings):
    def login(forwarded: str, password: str = "wrong"):
        return _login(client, "olga", password, REMOTE_ADDR="10.9.9.9", HTTP_X_FORWARDED_FOR=forwarded)

    # No trusted proxy: the header is the client's to invent and is ignored; all share 10.9.9.9.
    for n in range(2):
        assert login(f"203.0.113.{n}").status_code == 200
    assert login("203.0.113.99").status_code == 429
    assert login("203.0.113.98", password="pw-olga").status_code == 429
    # One trusted proxy: its entry (the last) is the client; what the client put before it is not.
    settings.TRUSTED_PROXY_HOPS = 1
    for _ in range(2):
        assert login("198.51.100.7, 203.0.113.1").status_code == 200
    assert login("198.51.100.8, 203.0.113.1").status_code == 429  # a forged first entry changes nothing
    assert login("203.0.113.2", password="pw-olga").status_code == 302  # another client behind the proxy
    # An entry that is no IP address (a proxy's "unknown") is no 500, on PostgreSQL's inet column too.
    assert login("unknown").status_code == 200
    assert login("unknown", password="pw-olga").status_code == 302


@pytest.mark.django_db(transaction=True)
async def test_a_locked_login_is_429_under_asgi_too(people, async_client):
    """daphne runs the middleware chain async, where axes calls the lockout response differently."""
    for _ in range(2):
        assert (
            await async_client.post("/login/", {"username": "olga", "password": "wrong"})
        ).status_code == 200
    locked = await async_client.post("/login/", {"username": "olga", "password": "wrong"})
    assert locked.status_code == 429 and 540 <= int(locked["Retry-After"]) <= 600
    right = await async_client.post("/login/", {"username": "olga", "password": "pw-olga"})
    assert right.status_code == 429 and "try again in" in right.content.decode()
    await sync_to_async(
        connections.close_all
    )()  # the request thread's (PostgreSQL: lets the test database go)
