"""/metrics: Prometheus text for operators, read by prometheus_client's own parser."""

from __future__ import annotations

import pytest
from django.conf import settings
from prometheus_client.parser import text_string_to_metric_families

from experiments.services import job_start


def _scrape(client, token: str | None) -> dict[tuple[str, tuple], float]:
    response = client.get("/metrics", headers={"Authorization": f"Bearer {token}"} if token else {})
    assert response.status_code == 200, response.content
    assert response["Content-Type"].startswith("text/plain")
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(response.content.decode())
        for sample in family.samples
    }


def _post(client, path: str, token: str, body: dict):
    response = client.post(
        f"/api/v1{path}", body, content_type="application/json", headers={"Authorization": f"Bearer {token}"}
    )
    assert response.status_code in (200, 201), response.content
    return response


@pytest.fixture
def admin(make_user):
    return make_user("ada", role="admin")


def test_it_needs_credentials(client, db):
    response = client.get("/metrics")
    assert response.status_code == 401 and response["WWW-Authenticate"].startswith("Bearer")


def test_a_researcher_and_a_wrong_token_are_refused(client, researcher, settings):
    settings.METRICS_TOKEN = "scrape-secret"
    assert (
        client.get("/metrics", headers={"Authorization": f"Bearer {researcher.raw_token}"}).status_code == 403
    )
    assert client.get("/metrics", headers={"Authorization": "Bearer scrape-secretX"}).status_code == 403


def test_the_metrics_token_and_an_admin_may_scrape(client, admin, settings):
    settings.METRICS_TOKEN = "scrape-secret"
    assert ("t4dm_jobs_running", ()) in _scrape(client, "scrape-secret")
    assert ("t4dm_jobs_running", ()) in _scrape(client, admin.raw_token)


def test_values_move_when_a_job_runs(client, admin, demo_config, django_capture_on_commit_callbacks):
    # given a platform with nothing running
    before = _scrape(client, admin.raw_token)
    assert before[("t4dm_jobs_running", ())] == 0

    # when a job is queued, a worker heartbeats, takes it, reports points and finishes it
    with django_capture_on_commit_callbacks(execute=False):
        job = job_start(owner=demo_config.owner, config=demo_config)
    queued = _scrape(client, admin.raw_token)
    _post(
        client,
        "/worker/heartbeat",
        settings.WORKER_SECRET,
        {"name": "gpu0@box", "queue": "training", "gpu_name": "H200", "gpu_count": 1,
         "gpu_memory_total_mb": 1000, "gpu_memory_free_mb": 600},
    )  # fmt: skip
    token = job.issue_token()
    _post(client, f"/worker/jobs/{job.public_id}/status", token, {"status": "running", "worker": "gpu0@box"})
    points = [{"key": "loss", "step": s, "value": 1.0 / s} for s in range(1, 8)]
    _post(client, f"/ingest/jobs/{job.public_id}/metrics", token, {"points": points})
    running = _scrape(client, admin.raw_token)
    _post(client, f"/worker/jobs/{job.public_id}/status", token, {"status": "succeeded"})
    done = _scrape(client, admin.raw_token)

    # then each scrape shows it
    assert (
        queued[("t4dm_jobs", (("status", "queued"),))] == before[("t4dm_jobs", (("status", "queued"),))] + 1
    )
    assert queued[("t4dm_queue_depth", (("queue", settings.CELERY_TASK_DEFAULT_QUEUE),))] >= 1
    assert running[("t4dm_jobs_running", ())] == 1
    # ids given out: at least one per stored point (on PostgreSQL the id sequence, which earlier tests'
    # rolled-back points also moved)
    assert (
        running[("t4dm_metric_points_ingested_total", ())]
        >= before[("t4dm_metric_points_ingested_total", ())] + 7
    )
    assert (
        running[("t4dm_worker_gpu_memory_total_bytes", (("gpu", "H200"), ("worker", "gpu0@box")))]
        == 1000 * 2**20
    )
    assert (
        running[("t4dm_worker_gpu_memory_free_bytes", (("gpu", "H200"), ("worker", "gpu0@box")))]
        == 600 * 2**20
    )
    assert running[("t4dm_worker_heartbeat_age_seconds", (("worker", "gpu0@box"),))] < 60
    assert done[("t4dm_jobs_running", ())] == 0
    assert (
        done[("t4dm_jobs", (("status", "succeeded"),))]
        == before[("t4dm_jobs", (("status", "succeeded"),))] + 1
    )
    # and the requests themselves were timed, by route
    latency = [k for k in done if k[0] == "t4dm_http_request_duration_seconds_count"]
    assert any(
        dict(labels).get("route", "").endswith("ingest/jobs/<job_id>/metrics") for _, labels in latency
    ), latency
