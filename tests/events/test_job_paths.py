"""Every path that ends a job has the same effects: the job.* webhook, the live status on the job's
websocket group, the workflow step waiting on the job, and (on success, with auto_version) a model
version. Before lifecycle events, the refused, MLflow and OpenAI paths each missed some of them."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from experiments.models import JobStatus
from experiments.services import (
    job_cancel,
    job_refuse,
    job_report_status,
    job_start,
    jobs_reap_lost,
)
from experiments.workflows.models import StepStatus

pytestmark = pytest.mark.django_db


@pytest.fixture
def queued_job(demo_config, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=False):
        return job_start(owner=demo_config.owner, config=demo_config)


@pytest.fixture
def running_job(queued_job, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=False):
        job_report_status(job=queued_job, status=JobStatus.RUNNING, worker="gpu-1")
    queued_job.refresh_from_db()
    return queued_job


def test_a_worker_reporting_success(running_job, watch, tmp_path, django_capture_on_commit_callbacks):
    watched = watch(running_job)
    with django_capture_on_commit_callbacks(execute=True):
        job_report_status(
            job=running_job,
            status=JobStatus.SUCCEEDED,
            final_model_path=str(tmp_path),
            result={"final_loss": 1.0},
        )
    assert watched.webhooks() == ["job.succeeded"]
    assert watched.live_statuses() == ["succeeded"]
    assert watched.step_status() == StepStatus.SUCCEEDED
    assert watched.step.output["final_loss"] == 1.0  # the worker's result reached the workflow
    [version] = watched.versions()
    assert version.provider == "local" and version.artifact_path == str(tmp_path)


def test_a_worker_reporting_failure(running_job, watch, django_capture_on_commit_callbacks):
    watched = watch(running_job)
    with django_capture_on_commit_callbacks(execute=True):
        job_report_status(job=running_job, status=JobStatus.FAILED, error="CUDA out of memory")
    assert watched.webhooks() == ["job.failed"]
    assert watched.live_statuses() == ["failed"]
    assert watched.step_status() == StepStatus.FAILED and "CUDA out of memory" in watched.step.error
    assert watched.versions() == []


def test_a_cancel_before_a_worker_started_it(queued_job, watch, django_capture_on_commit_callbacks):
    watched = watch(queued_job)
    with django_capture_on_commit_callbacks(execute=True):
        job_cancel(job=queued_job)
    assert watched.webhooks() == ["job.cancelled"]
    assert watched.live_statuses() == ["cancelled"]
    assert watched.step_status() == StepStatus.FAILED


def test_a_cancel_request_of_a_running_job_is_live_only(
    running_job, watch, django_capture_on_commit_callbacks
):
    watched = watch(running_job)
    with django_capture_on_commit_callbacks(execute=True):
        job_cancel(job=running_job)
    assert watched.webhooks() == []  # still running until its worker stops
    assert watched.live_statuses() == ["running"]
    assert watched.messages[-1]["job"]["cancel_requested"] is True
    assert watched.step_status() == StepStatus.RUNNING


def test_a_lost_job_that_is_failed(running_job, watch, settings, django_capture_on_commit_callbacks):
    settings.LOST_JOB_POLICY = "fail"
    watched = watch(running_job)
    with django_capture_on_commit_callbacks(execute=True):
        jobs_reap_lost(now=timezone.now() + timedelta(seconds=settings.HEARTBEAT_TIMEOUT + 60))
    assert watched.webhooks() == ["job.failed"]
    assert watched.live_statuses() == ["failed"]
    assert watched.step_status() == StepStatus.FAILED


def test_a_lost_job_that_is_requeued(running_job, watch, settings, django_capture_on_commit_callbacks):
    settings.LOST_JOB_POLICY = "requeue"
    watched = watch(running_job)
    with django_capture_on_commit_callbacks(execute=True):
        jobs_reap_lost(now=timezone.now() + timedelta(seconds=settings.HEARTBEAT_TIMEOUT + 60))
    assert watched.webhooks() == ["job.queued"]
    assert watched.live_statuses() == ["queued"]
    assert watched.step_status() == StepStatus.RUNNING  # the workflow waits for the next attempt


def test_a_refused_job_is_requeued_with_a_job_queued_webhook(
    queued_job, watch, settings, django_capture_on_commit_callbacks
):
    settings.JOB_MAX_REFUSALS = 3
    watched = watch(queued_job)
    with django_capture_on_commit_callbacks(execute=True):
        job_refuse(job=queued_job, worker="small-gpu", reason="needs 40 GB, has 8")
    assert watched.webhooks() == ["job.queued"]  # as after a lost worker
    assert watched.live_statuses() == ["queued"]
    assert watched.step_status() == StepStatus.RUNNING


def test_a_job_refused_too_often_fails(queued_job, watch, settings, django_capture_on_commit_callbacks):
    settings.JOB_MAX_REFUSALS = 1
    watched = watch(queued_job)
    with django_capture_on_commit_callbacks(execute=True):
        job_refuse(job=queued_job, worker="small-gpu", reason="needs 40 GB, has 8")
    assert watched.webhooks() == ["job.failed"]
    assert watched.live_statuses() == ["failed"]
    assert watched.step_status() == StepStatus.FAILED and "refusals" in watched.step.error


@pytest.mark.parametrize(("run_status", "job_status"), [("FINISHED", "succeeded"), ("FAILED", "failed")])
def test_an_mlflow_client_ending_its_run(
    researcher, watch, run_status, job_status, django_capture_on_commit_callbacks
):
    from experiments.mlflow_compat.services import run_create, run_update
    from experiments.services import experiment_create

    experiment = experiment_create(owner=researcher, name="tracked outside")
    with django_capture_on_commit_callbacks(execute=False):
        run = run_create(owner=researcher, experiment=experiment, run_name="r1")
    watched = watch(run.job)
    with django_capture_on_commit_callbacks(execute=True):
        run_update(run=run, status=run_status)
    assert watched.webhooks() == [f"job.{job_status}"]
    assert watched.live_statuses() == [job_status]
    expected_step = StepStatus.SUCCEEDED if job_status == "succeeded" else StepStatus.FAILED
    assert watched.step_status() == expected_step
    assert watched.versions() == []  # a tracking-only run has no model to register
