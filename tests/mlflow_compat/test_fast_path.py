"""The MLflow client's lean ASGI path (t4dm_site/fast_mlflow.py) in production mode (PostgreSQL, Redis),
under daphne and uvicorn: the real `mlflow` client logs through it and reads back every value; anything
the lean path does not serve gets Django's own answer (compared with a server that has the lean paths off,
T4DM_FAST_INGEST=0, on the same database) and Django's storing."""

from __future__ import annotations

import gc
import json
import math
import re
import subprocess

import httpx
import psycopg
import pytest

from t4dm_site.management.commands.t4dm_up import web_command
from tests.platform import ROOT, add_uvicorn, free_port, production_web, served_by, stop_production_web

pytestmark = [pytest.mark.e2e, pytest.mark.production]


@pytest.fixture(scope="module")
def platform(tmp_path_factory):
    data = tmp_path_factory.mktemp("fast-mlflow")
    platform = production_web(data, asgi_processes=1)  # daphne, lean paths on
    try:
        add_uvicorn(platform, data)
        # The reference: Django answers everything (same database).
        port = str(free_port())
        log = open(data / "django.log", "w")  # noqa: SIM115 - closed with the process
        platform.processes.append(
            subprocess.Popen(
                web_command("daphne", "127.0.0.1", port, data / "django-access.log"),
                cwd=ROOT, env={**platform.env, "T4DM_FAST_INGEST": "0"}, stdout=log,
                stderr=subprocess.STDOUT, start_new_session=True,
            )
        )  # fmt: skip
        platform.django_url = f"http://127.0.0.1:{port}"
        platform.wait_until_up(url=platform.django_url)
        platform.users = {
            name: platform.manage("create_api_token", name, "--create-user", "--role", role).strip()
            for name, role in (("alice", "researcher"), ("bob", "researcher"), ("eve", "evaluator"))
        }
        yield platform
    finally:
        stop_production_web(platform)


@pytest.fixture(params=["daphne", "uvicorn"])
def web(request, platform):
    """The platform, with `base_url` the chosen lean server's."""
    with served_by(platform, request.param):
        yield platform


def _sql(web, query: str, params=()) -> list:
    with psycopg.connect(web.env["DATABASE_URL"], autocommit=True) as conn:
        cursor = conn.execute(query, params)
        return cursor.fetchall() if cursor.description else []


def _lean_count(url: str, token: str) -> float:
    """The server's count of requests the lean path answered (/metrics)."""
    text = httpx.get(f"{url}/metrics", headers={"Authorization": f"Bearer {token}"}, timeout=30).text
    found = re.search(r"^t4dm_mlflow_lean_requests_total (\S+)$", text, re.MULTILINE)
    return float(found.group(1)) if found else 0.0


def _run(web, user: str = "alice", name: str = "lean") -> str:
    answer = httpx.post(
        f"{web.base_url}/api/2.0/mlflow/runs/create",
        headers={"Authorization": f"Bearer {web.users[user]}"},
        json={"experiment_id": "0", "run_name": name},
        timeout=30,
    )
    assert answer.status_code == 200, answer.text
    return answer.json()["run"]["info"]["run_id"]


def _history(web, run_id: str, key: str, user: str = "alice") -> list[tuple[int, int, float]]:
    answer = httpx.get(
        f"{web.base_url}/api/2.0/mlflow/metrics/get-history",
        params={"run_id": run_id, "metric_key": key},
        headers={"Authorization": f"Bearer {web.users[user]}"},
        timeout=30,
    )
    assert answer.status_code == 200, answer.text
    return [(m["step"], m["timestamp"], m["value"]) for m in answer.json()["metrics"]]


def _stored(web, run_id: str) -> tuple[list, list]:
    """The run's points and extra values, as stored."""
    job = "(SELECT job_id FROM mlflow_compat_mlflowrun WHERE run_uuid = %s)"
    points = _sql(web, f"SELECT key, step, value, wall_time FROM experiments_metricpoint WHERE job_id = {job} "
                       "ORDER BY key, step", (run_id,))  # fmt: skip
    extras = _sql(web, "SELECT key, step, timestamp, value FROM mlflow_compat_metricvalueextra "
                       f"WHERE job_id = {job} ORDER BY key, step, id", (run_id,))  # fmt: skip
    return points, extras


@pytest.fixture
def tracking(web, monkeypatch):
    import mlflow

    monkeypatch.setenv("MLFLOW_TRACKING_URI", web.base_url)
    monkeypatch.setenv("MLFLOW_TRACKING_TOKEN", web.users["alice"])
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    # The client keeps the last experiment set in this process (another test's, on another server):
    # name this server's own.
    mlflow.set_experiment("lean path")
    yield mlflow
    if mlflow.active_run() is not None:
        mlflow.end_run()
    from mlflow.utils.request_utils import _cached_get_request_session

    _cached_get_request_session.cache_clear()
    gc.collect()


def test_the_mlflow_client_logs_live_through_the_lean_path(web, tracking):
    mlflow = tracking
    before = _lean_count(web.base_url, web.token)
    values = {step: math.sin(step) / 3 + step * 1e-7 for step in range(40)}
    with mlflow.start_run(run_name="lean client") as run:
        for step in range(20):  # runs/log-metric, one step per request
            mlflow.log_metric("loss", values[step], step=step)
        for step in range(20, 40):  # runs/log-batch, one step per request
            mlflow.log_metrics({"loss": values[step], "lr": 0.001 * step}, step=step)
    run_id = run.info.run_id
    assert _lean_count(web.base_url, web.token) - before == 40  # every one of them answered before Django
    history = mlflow.MlflowClient().get_metric_history(run_id, "loss")
    assert [(m.step, m.value) for m in history] == [(s, values[s]) for s in range(40)]
    assert all(m.timestamp > 1_600_000_000_000 for m in history)
    lr = mlflow.MlflowClient().get_metric_history(run_id, "lr")
    assert [(m.step, m.value) for m in lr] == [(s, 0.001 * s) for s in range(20, 40)]
    points, extras = _stored(web, run_id)
    # wall time is the client's timestamp / 1000, exactly as Django computes it
    stamps = {(m.step, m.key): m.timestamp for m in [*history, *lr]}
    assert all(t == stamps[(s, k)] / 1000 for k, s, _, t in points) and extras == []
    data = mlflow.MlflowClient().get_run(run_id).data
    assert data.metrics == {"loss": values[39], "lr": 0.001 * 39}  # the job's latest values, folded in


def _post(url: str, path: str, body, token: str | None, headers=None):
    content = body if isinstance(body, bytes) else json.dumps(body).encode()
    sent = {"Content-Type": "application/json", **(headers or {})}
    if token is not None:
        sent["Authorization"] = f"Bearer {token}"
    return httpx.post(f"{url}/api/2.0/mlflow/{path}", content=content, headers=sent, timeout=30)


def _headers(answer) -> dict:
    """The answer's headers; the CSP's directives as a set (django-csp orders them per process)."""
    out = {k: v for k, v in answer.headers.items() if k not in ("date", "server")}
    out["content-security-policy"] = set(out["content-security-policy"].split("; "))
    return out


def test_a_one_step_answer_is_djangos(web):
    run_id = _run(web)
    lean = _post(web.base_url, "runs/log-metric", {"run_id": run_id, "key": "a", "value": 1.0, "step": 1,
                                                   "timestamp": 1_700_000_000_123}, web.users["alice"])  # fmt: skip
    django = _post(web.django_url, "runs/log-metric", {"run_id": run_id, "key": "a", "value": 1.0, "step": 2,
                                                       "timestamp": 1_700_000_000_456}, web.users["alice"])  # fmt: skip
    assert (lean.status_code, lean.content) == (django.status_code, django.content) == (200, b"{}")
    assert _headers(lean) == _headers(django)
    assert _history(web, run_id, "a") == [(1, 1_700_000_000_123, 1.0), (2, 1_700_000_000_456, 1.0)]
    assert _stored(web, run_id)[0] == [("a", 1, 1.0, 1_700_000_000.123), ("a", 2, 1.0, 1_700_000_000.456)]


def _setup_sql(web, run_id: str, statement: str) -> None:
    _sql(web, statement.replace("RUN", "%s"), (run_id,) if "RUN" in statement else ())


# (name, endpoint, body with RUN for the run id, the token's user, setup SQL or None)
_REFUSED = [
    ("another user's run", "runs/log-batch", {"run_id": "RUN", "metrics": [{"key": "a", "value": 1, "step": 0}]},
     "bob", None),
    ("evaluator", "runs/log-metric", {"run_id": "RUN", "key": "a", "value": 1, "step": 0}, "eve", None),
    ("unknown run", "runs/log-metric", {"run_id": "0" * 32, "key": "a", "value": 1, "step": 0}, "alice", None),
    ("NaN", "runs/log-batch", b'{"run_id": "RUN", "metrics": [{"key": "a", "value": NaN, "step": 0}]}',
     "alice", None),
    ("NaN string", "runs/log-metric", {"run_id": "RUN", "key": "a", "value": "NaN", "step": 0}, "alice", None),
    ("Infinity", "runs/log-metric", b'{"run_id": "RUN", "key": "a", "value": Infinity}', "alice", None),
    ("1e400", "runs/log-metric", b'{"run_id": "RUN", "key": "a", "value": 1e400}', "alice", None),
    ("bad key", "runs/log-batch", {"run_id": "RUN", "metrics": [{"key": "a", "value": 1, "step": 0},
                                                              {"key": "bad key!", "value": 1, "step": 1}]},
     "alice", None),
    ("empty key", "runs/log-metric", {"run_id": "RUN", "key": "", "value": 1}, "alice", None),
    ("long key", "runs/log-metric", {"run_id": "RUN", "key": "k" * 251, "value": 1}, "alice", None),
    ("key not a string", "runs/log-metric", {"run_id": "RUN", "key": 5, "value": 1}, "alice", None),
    ("negative step", "runs/log-metric", {"run_id": "RUN", "key": "a", "value": 1, "step": -1}, "alice", None),
    ("fractional step", "runs/log-metric", {"run_id": "RUN", "key": "a", "value": 1, "step": 1.5}, "alice", None),
    ("huge step", "runs/log-metric", {"run_id": "RUN", "key": "a", "value": 1, "step": 2**64}, "alice", None),
    ("no value", "runs/log-metric", {"run_id": "RUN", "key": "a", "step": 0}, "alice", None),
    ("too many metrics", "runs/log-batch",
     {"run_id": "RUN", "metrics": [{"key": "a", "value": 1, "step": s} for s in range(1001)]}, "alice", None),
    ("malformed JSON", "runs/log-batch", b'{"run_id": "RUN", "metrics": [', "alice", None),
    ("not an object", "runs/log-batch", b'[{"run_id": "RUN"}]', "alice", None),
    ("run_id a number", "runs/log-batch", {"run_id": 5, "metrics": [{"key": "a", "value": 1}]}, "alice", None),
    ("metrics null", "runs/log-batch", {"run_id": "RUN", "metrics": None}, "alice", None),
    ("params null", "runs/log-batch", {"run_id": "RUN", "metrics": [{"key": "a", "value": 1}], "params": None},
     "alice", None),
    ("deleted run", "runs/log-metric", {"run_id": "RUN", "key": "a", "value": 1, "step": 0}, "alice",
     "UPDATE mlflow_compat_mlflowrun SET lifecycle_stage = 'deleted' WHERE run_uuid = RUN"),
    ("revoked token", "runs/log-metric", {"run_id": "RUN", "key": "a", "value": 1, "step": 0}, "alice",
     "UPDATE t4dm_site_apitoken SET revoked_at = now() WHERE user_id = (SELECT id FROM auth_user WHERE username = 'alice')"),
    ("inactive user", "runs/log-metric", {"run_id": "RUN", "key": "a", "value": 1, "step": 0}, "alice",
     "UPDATE auth_user SET is_active = false WHERE username = 'alice'"),
]  # fmt: skip
_UNDO = {
    "deleted run": "UPDATE mlflow_compat_mlflowrun SET lifecycle_stage = 'active' WHERE run_uuid = RUN",
    "revoked token": "UPDATE t4dm_site_apitoken SET revoked_at = NULL WHERE user_id = (SELECT id FROM auth_user WHERE username = 'alice')",
    "inactive user": "UPDATE auth_user SET is_active = true WHERE username = 'alice'",
}  # fmt: skip


@pytest.mark.parametrize("case", _REFUSED, ids=[c[0] for c in _REFUSED])
def test_refused_requests_get_djangos_answer_and_store_nothing(web, case):
    name, path, body, user, setup = case
    run_id = _run(web)
    content = body if isinstance(body, bytes) else json.dumps(body).encode()
    content = content.replace(b"RUN", run_id.encode())
    before = _lean_count(web.base_url, web.token)
    if setup:
        _setup_sql(web, run_id, setup)
    try:
        lean = _post(web.base_url, path, content, web.users[user])
        django = _post(web.django_url, path, content, web.users[user])
    finally:
        if setup:
            _setup_sql(web, run_id, _UNDO[name])
    assert lean.status_code >= 400, lean.text
    assert (lean.status_code, lean.json()) == (django.status_code, django.json())
    assert _lean_count(web.base_url, web.token) == before
    assert _stored(web, run_id) == ([], [])


def test_requests_without_a_usable_token_get_djangos_answer(web):
    run_id = _run(web)
    body = json.dumps({"run_id": run_id, "key": "a", "value": 1, "step": 0}).encode()
    token = web.users["alice"]
    before = _lean_count(web.base_url, web.token)
    cases = {
        "no token": [],
        "forged": [("Authorization", "Bearer t4dm_forged")],
        "not bearer": [("Authorization", f"Token {token}")],
        "two headers": [("Authorization", f"Bearer {token}"), ("Authorization", f"Bearer {token}")],
        "bad host": [("Authorization", f"Bearer {token}"), ("Host", "evil.example")],
    }
    for name, headers in cases.items():
        answers = [
            httpx.post(
                f"{url}/api/2.0/mlflow/runs/log-metric",
                content=body,
                timeout=30,
                headers=[("Content-Type", "application/json"), *headers],
            )  # fmt: skip
            for url in (web.base_url, web.django_url)
        ]
        lean, django = answers
        assert lean.status_code >= 400 and (lean.status_code, lean.content) == (
            django.status_code,
            django.content,
        ), name
    assert _lean_count(web.base_url, web.token) == before
    assert _stored(web, run_id) == ([], [])


def test_what_only_django_serves_is_stored_as_django_stores_it(web):
    run_id = _run(web)
    token = web.users["alice"]
    before = _lean_count(web.base_url, web.token)

    def log(path, body):
        answer = _post(web.base_url, path, body, token)
        assert (answer.status_code, answer.content) == (200, b"{}"), answer.text

    log("runs/log-metric", {"run_id": run_id, "key": "loss", "value": 1.0, "step": 5, "timestamp": 1000})
    assert _lean_count(web.base_url, web.token) == before + 1
    # The same step again (MLflow keeps both values), and a batch that repeats a step: Django's.
    log("runs/log-metric", {"run_id": run_id, "key": "loss", "value": 2.0, "step": 5, "timestamp": 2000})
    log("runs/log-batch", {"run_id": run_id, "metrics": [{"key": "acc", "value": 0.5, "step": 1, "timestamp": 3000},
                                                         {"key": "acc", "value": 0.7, "step": 1, "timestamp": 4000}]})  # fmt: skip
    # Params or tags, a value as a string, a step written 1.0: Django's.
    log("runs/log-batch", {"run_id": run_id, "metrics": [{"key": "p", "value": 1, "step": 0}],
                           "params": [{"key": "lr", "value": "0.1"}], "tags": []})  # fmt: skip
    log("runs/log-metric", {"run_id": run_id, "key": "s", "value": "1.5", "step": 0, "timestamp": 5000})
    log("runs/log-metric", {"run_id": run_id, "key": "f", "value": 2, "step": 1.0, "timestamp": 6000})
    # An admin logging to another user's run (the sharing rule's other case): Django's.
    admin = _post(
        web.base_url, "runs/log-metric", {"run_id": run_id, "key": "adm", "value": 1, "step": 0}, web.token
    )
    assert (admin.status_code, admin.content) == (200, b"{}")
    assert _lean_count(web.base_url, web.token) == before + 1
    # ... and a batch of new steps only, with empty params and tags, is the lean path's again.
    log("runs/log-batch", {"run_id": run_id, "metrics": [{"key": "loss", "value": 3.0, "step": 6, "timestamp": 7000}],
                           "params": [], "tags": []})  # fmt: skip
    assert _lean_count(web.base_url, web.token) == before + 2
    assert _history(web, run_id, "loss") == [(5, 1000, 1.0), (5, 2000, 2.0), (6, 7000, 3.0)]
    assert _history(web, run_id, "acc") == [(1, 3000, 0.5), (1, 4000, 0.7)]
    assert _history(web, run_id, "s") == [(0, 5000, 1.5)]
    assert _history(web, run_id, "f") == [(1, 6000, 2.0)]
    assert [v for _, _, v in _history(web, run_id, "adm")] == [1.0]
    params = _sql(web, "SELECT params FROM mlflow_compat_mlflowrun WHERE run_uuid = %s", (run_id,))
    assert params == [({"lr": "0.1"},)]


def test_a_logging_run_is_never_reaped_and_its_token_is_marked_used(web):
    run_id = _run(web)
    _sql(web, "UPDATE t4dm_site_apitoken SET last_used_at = NULL WHERE user_id = (SELECT id FROM auth_user WHERE username = 'alice')")  # fmt: skip
    before = _lean_count(web.base_url, web.token)
    for step in range(3):
        answer = _post(web.base_url, "runs/log-metric", {"run_id": run_id, "key": "loss", "value": 1, "step": step},
                       web.users["alice"])  # fmt: skip
        assert answer.status_code == 200
    assert _lean_count(web.base_url, web.token) == before + 3
    used = _sql(web, "SELECT last_used_at FROM t4dm_site_apitoken t JOIN auth_user u ON u.id = t.user_id WHERE u.username = 'alice'")  # fmt: skip
    assert used[0][0] is not None
    # The reaper, an hour from now: the tracking run has no heartbeat to miss.
    reaped = web.manage("shell", "-c", (
        "from datetime import timedelta\nfrom django.utils import timezone\n"
        "from experiments.jobs import jobs_reap_lost\n"
        "print([j.pk for j in jobs_reap_lost(now=timezone.now() + timedelta(hours=1))])"))  # fmt: skip
    job_pk, status = _sql(web, "SELECT j.id, j.status FROM experiments_trainingjob j JOIN mlflow_compat_mlflowrun r "
                               "ON r.job_id = j.id WHERE r.run_uuid = %s", (run_id,))[0]  # fmt: skip
    assert str(job_pk) not in reaped.strip().splitlines()[-1].strip("[]").split(", ")
    assert status == "running"


def test_a_viewer_gets_the_points_live(web):
    import asyncio

    import websockets

    run_id = _run(web)
    job = _sql(web, "SELECT job_id FROM mlflow_compat_mlflowrun WHERE run_uuid = %s", (run_id,))[0][0]
    ws_url = web.base_url.replace("http://", "ws://") + f"/ws/jobs/job-{job:03d}/"

    async def watch():
        headers = {"Authorization": f"Bearer {web.users['alice']}", "Origin": web.base_url}
        async with websockets.connect(ws_url, additional_headers=headers) as socket:
            got: list = []
            snapshot = json.loads(await asyncio.wait_for(socket.recv(), 30))
            assert snapshot["type"] == "snapshot", snapshot
            for step in range(5):
                body = {"run_id": run_id, "key": "loss", "value": step, "step": step}
                assert _post(web.base_url, "runs/log-metric", body, web.users["alice"]).status_code == 200
            while len(got) < 5:
                message = json.loads(await asyncio.wait_for(socket.recv(), 30))
                if message["type"] == "points":
                    got.extend((p["step"], p["value"]) for p in message["points"])
            return got

    assert asyncio.run(watch()) == [(s, float(s)) for s in range(5)]


def test_concurrent_values_at_one_step_are_all_kept(web):
    """Requests racing on one (key, step): whichever stores first, none of the others is dropped (the
    lean path refuses them, and Django stores them as extra values)."""
    from concurrent.futures import ThreadPoolExecutor

    run_id = _run(web)

    def log(value: int):
        body = {"run_id": run_id, "key": "race", "value": value, "step": 7, "timestamp": 1000 + value}
        return _post(web.base_url, "runs/log-metric", body, web.users["alice"]).status_code

    for round_ in range(3):
        with ThreadPoolExecutor(8) as pool:
            assert list(pool.map(log, range(round_ * 8, round_ * 8 + 8))) == [200] * 8
    history = _history(web, run_id, "race")
    assert sorted(v for _, _, v in history) == [float(v) for v in range(24)]
    assert {(s, t) for s, t, v in history} == {(7, 1000 + int(v)) for _, _, v in history}
    points, extras = _stored(web, run_id)
    assert len(points) == 1 and len(extras) == 23
