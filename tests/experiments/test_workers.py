from __future__ import annotations

from datetime import timedelta

from django.conf import settings
from django.utils import timezone

from experiments.models import JobStatus, TrainingJob, Worker, WorkerStatus
from experiments.selectors import workers_overview
from experiments.services import job_report_status, job_start, jobs_reap_lost


def _heartbeat(client, secret: str, **payload):
    return client.post(
        "/api/v1/worker/heartbeat",
        {"name": "gpu0@box", "queue": "training", **payload},
        content_type="application/json",
        headers={"Authorization": f"Bearer {secret}"},
    )


def _running_job(researcher, demo_config, django_capture_on_commit_callbacks) -> TrainingJob:
    with django_capture_on_commit_callbacks(execute=False):
        job = job_start(owner=researcher, config=demo_config)
    return job_report_status(job=job, status="running", worker="gpu0@box")


def test_heartbeat_needs_the_worker_secret(client, db):
    assert _heartbeat(client, "wrong").status_code == 401
    assert not Worker.objects.exists()


def test_heartbeat_registers_the_worker_and_keeps_its_job_alive(
    client, researcher, demo_config, django_capture_on_commit_callbacks
):
    # given a running job whose last progress is old
    job = _running_job(researcher, demo_config, django_capture_on_commit_callbacks)
    TrainingJob.objects.filter(pk=job.pk).update(heartbeat_at=timezone.now() - timedelta(hours=1))

    # when its worker heartbeats
    response = _heartbeat(
        client,
        settings.WORKER_SECRET,
        gpu_name="NVIDIA H100 80GB HBM3",
        gpu_count=1,
        gpu_memory_total_mb=81559,
        gpu_memory_free_mb=80000,
        current_job_id=job.public_id,
    )

    # then
    assert response.status_code == 200 and response.json()["status"] == "busy"
    [row] = workers_overview(user=researcher)
    assert row["name"] == "gpu0@box" and row["current_job_id"] == job.public_id
    assert row["gpu_name"].startswith("NVIDIA H100") and row["gpu_memory_total_mb"] == 81559
    assert row["seconds_since_heartbeat"] < 5
    job.refresh_from_db()
    assert (timezone.now() - job.heartbeat_at).total_seconds() < 5
    assert jobs_reap_lost() == []


def test_a_silent_job_is_requeued_with_a_new_token(
    researcher, demo_config, django_capture_on_commit_callbacks, settings
):
    # given a running job and its worker, both silent for longer than the timeout
    settings.HEARTBEAT_TIMEOUT = 30
    job = _running_job(researcher, demo_config, django_capture_on_commit_callbacks)
    old_token_hash = job.token_hash
    Worker.objects.create(name="gpu0@box", current_job=job, status=WorkerStatus.BUSY)
    later = timezone.now() + timedelta(seconds=31)

    # when
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        changed = jobs_reap_lost(now=later)

    # then
    assert [j.pk for j in changed] == [job.pk]
    job.refresh_from_db()
    assert job.status == JobStatus.QUEUED and job.lost_count == 1 and job.token_hash != old_token_hash
    assert any(cb.__qualname__.startswith("job_enqueue_on_commit") for cb in callbacks)
    assert "lost" in job.events.last().message
    assert Worker.objects.get().status == WorkerStatus.LOST


def test_a_lost_job_fails_once_its_requeues_are_used_up(
    researcher, demo_config, django_capture_on_commit_callbacks, settings
):
    settings.HEARTBEAT_TIMEOUT = 30
    settings.LOST_JOB_MAX_REQUEUES = 0
    job = _running_job(researcher, demo_config, django_capture_on_commit_callbacks)

    jobs_reap_lost(now=timezone.now() + timedelta(seconds=60))

    job.refresh_from_db()
    assert job.status == JobStatus.FAILED and job.error.startswith("lost: gpu0@box")


def test_workers_api_lists_workers(api, researcher, client):
    _heartbeat(client, settings.WORKER_SECRET)

    response = api.get(researcher, "/workers")

    assert response.status_code == 200
    assert [w["name"] for w in response.json()] == ["gpu0@box"]
    assert response.json()[0]["status"] == "idle"
