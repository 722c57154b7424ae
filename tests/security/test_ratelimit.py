"""Item 11: rate limiting (t4dm_site/ratelimit.py, a cache-based limiter): failed logins and bad bearer
tokens per client address get 429 with Retry-After once over the limit; others are unaffected."""

from __future__ import annotations

import pytest
from django.core.cache import cache


@pytest.fixture(autouse=True)
def _limits(settings):
    settings.LOGIN_RATE_LIMIT = 3
    settings.TOKEN_RATE_LIMIT = 4
    settings.RATE_LIMIT_WINDOW_SECONDS = 600
    cache.clear()
    yield
    cache.clear()


def test_failed_logins_are_limited_per_address(client, people):
    for _ in range(3):
        assert client.post("/login/", {"username": "olga", "password": "wrong"}).status_code == 200
    blocked = client.post("/login/", {"username": "olga", "password": "pw-olga"})
    assert blocked.status_code == 429
    assert 0 < int(blocked["Retry-After"]) <= 600 and "try again in" in blocked.content.decode()
    # The admin's login form shares the limit.
    assert client.post("/admin/login/", {"username": "olga", "password": "x"}).status_code == 429
    # Another address still logs in; a successful login is never counted.
    other = client.post("/login/", {"username": "olga", "password": "pw-olga"}, REMOTE_ADDR="10.0.0.2")
    assert other.status_code == 302
    # Reading the login page is not limited.
    assert client.get("/login/").status_code == 200


def test_bad_tokens_are_limited_per_address_on_every_api(client, people):
    bad = {"Authorization": "Bearer t4dm_guess"}
    assert client.get("/api/v1/jobs", headers=bad).status_code == 401
    assert client.get("/v1/files", headers=bad).status_code == 401
    assert client.get("/api/2.0/mlflow/experiments/search", headers=bad).status_code == 401
    assert client.post("/api/v1/worker/heartbeat", {}, content_type="application/json", headers=bad).status_code == 401
    blocked = client.get("/api/v1/jobs", headers=bad)
    assert blocked.status_code == 429 and int(blocked["Retry-After"]) > 0
    error = blocked.json()["error"]
    assert error["code"] == "rate_limited" and error["details"]["retry_after"] == int(blocked["Retry-After"])
    # Even a good token from that address waits: the address is what is limited.
    good = {"Authorization": f"Bearer {people['owner'].raw_token}"}
    assert client.get("/api/v1/jobs", headers=good).status_code == 429
    assert client.get("/api/v1/jobs", headers=good, REMOTE_ADDR="10.0.0.3").status_code == 200
    # Job tokens are neither counted nor limited (a requeued job's old worker retries with a stale one).
    stale = {"Authorization": "Bearer t4job_1_stale"}
    for _ in range(6):
        assert client.get("/api/v1/worker/jobs/job-001/spec", headers=stale, REMOTE_ADDR="10.0.0.4").status_code == 401
    assert client.get("/api/v1/jobs", headers=good, REMOTE_ADDR="10.0.0.4").status_code == 200


def test_successful_requests_are_never_counted(client, people):
    good = {"Authorization": f"Bearer {people['owner'].raw_token}"}
    for _ in range(10):
        assert client.get("/api/v1/jobs", headers=good).status_code == 200
    # 403 (wrong role) and 404 are not authentication failures either.
    evaluator = {"Authorization": f"Bearer {people['evaluator'].raw_token}"}
    for _ in range(6):
        assert client.get("/api/v1/jobs", headers=evaluator).status_code == 403
    assert client.get("/api/v1/jobs", headers=good).status_code == 200


def test_behind_a_trusted_proxy_clients_are_told_apart_by_the_address_it_saw(client, people, settings):
    def login(forwarded: str):
        return client.post(
            "/login/",
            {"username": "olga", "password": "wrong"},
            REMOTE_ADDR="10.9.9.9",  # the proxy
            HTTP_X_FORWARDED_FOR=forwarded,
        )

    # No trusted proxy: the header is the client's to invent and is ignored; all share 10.9.9.9.
    for n in range(3):
        assert login(f"203.0.113.{n}").status_code == 200
    assert login("203.0.113.99").status_code == 429
    cache.clear()
    # One trusted proxy: its entry (the last) is the client; what the client put before it is not.
    settings.TRUSTED_PROXY_HOPS = 1
    for _ in range(3):
        assert login("198.51.100.7, 203.0.113.1").status_code == 200
    assert login("198.51.100.8, 203.0.113.1").status_code == 429  # a forged first entry changes nothing
    assert login("203.0.113.2").status_code == 200  # another client behind the same proxy
