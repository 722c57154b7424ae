"""The running → succeeded | failed trio lives in one mixin (t4dm_site.status); each model that uses it
still moves through its own statuses and stores every field that changes with them."""

from __future__ import annotations

import pytest

from datasets_app.models import DatasetTask
from experiments.human_eval.models import HumanEvalTask
from experiments.models import Evaluation, TrainingJob
from experiments.workflows.models import Workflow, WorkflowStep
from t4dm_site.status import StatusTransitionsMixin

pytestmark = pytest.mark.django_db


def _fresh(obj):
    return type(obj).objects.get(pk=obj.pk)


def test_every_model_with_the_trio_uses_the_mixin():
    for model in (TrainingJob, Evaluation, Workflow, WorkflowStep, DatasetTask, HumanEvalTask):
        assert issubclass(model, StatusTransitionsMixin), model


def test_a_job_keeps_its_first_start_and_its_token_dies_with_it(demo_config):
    from experiments.services import job_start

    job = job_start(owner=demo_config.owner, config=demo_config)
    token = job.issue_token()
    job.mark_running(worker="w1")
    first_start = _fresh(job).started_at
    job.mark_lost_and_requeued()
    job.mark_running(worker="w2")

    stored = _fresh(job)
    assert (stored.status, stored.worker, stored.started_at) == ("running", "w2", first_start)
    assert stored.heartbeat_at is not None

    job.mark_succeeded(final_model_path="/models/final")
    stored = _fresh(job)
    assert (stored.status, stored.final_model_path) == ("succeeded", "/models/final")
    assert stored.finished_at is not None and stored.token_hash == "" and stored.token_retired(token)


def test_a_failed_job_keeps_its_error(demo_config):
    from experiments.services import job_start

    job = job_start(owner=demo_config.owner, config=demo_config)
    job.issue_token()
    job.mark_failed(error="out of memory")
    stored = _fresh(job)
    assert (stored.status, stored.error, stored.token_hash) == ("failed", "out of memory", "")
    assert stored.finished_at is not None


def test_an_evaluation_saves_its_results_with_success(researcher):
    evaluation = Evaluation.objects.create(owner=researcher, model_path="t4dm-tiny", error="old")
    evaluation.mark_running()
    stored = _fresh(evaluation)
    assert (stored.status, stored.error) == ("running", "") and stored.started_at is not None

    evaluation.metrics = {"perplexity": 3.0}  # the worker sets results, then marks success
    evaluation.mark_succeeded()
    stored = _fresh(evaluation)
    assert (stored.status, stored.progress, stored.metrics) == ("succeeded", 1.0, {"perplexity": 3.0})
    assert stored.finished_at is not None


def test_a_workflow_and_its_steps(researcher):
    workflow = Workflow.objects.create(owner=researcher, name="wf")
    step = WorkflowStep.objects.create(workflow=workflow, name="train", position=0)

    workflow.mark_running()
    step.mark_running()
    step.mark_failed(error="boom")
    workflow.mark_failed(error="train failed")
    first_start = _fresh(workflow).started_at

    workflow.mark_running()  # a retry
    step.mark_running()
    stored_step = _fresh(step)
    assert (stored_step.status, stored_step.error, stored_step.attempts) == ("running", "", 2)
    assert stored_step.finished_at is None
    stored = _fresh(workflow)
    assert (stored.status, stored.error, stored.finished_at) == ("running", "", None)
    assert stored.started_at == first_start

    step.mark_succeeded(output={"job_id": "job-001"})
    workflow.mark_succeeded()
    assert (_fresh(step).status, _fresh(step).output) == ("succeeded", {"job_id": "job-001"})
    assert _fresh(workflow).status == "succeeded" and _fresh(workflow).finished_at is not None


def test_a_dataset_task(demo_config):
    version = demo_config.dataset_version
    task = DatasetTask.objects.create(owner=demo_config.owner, source_version=version)
    before = _fresh(task).updated_at
    task.mark_running()
    assert _fresh(task).status == "running" and _fresh(task).updated_at >= before
    task.mark_succeeded(version)
    stored = _fresh(task)
    assert (stored.status, stored.progress, stored.result_version, stored.message) == (
        "succeeded",
        1.0,
        version,
        f"created {version}",
    )
    task.mark_failed("disk full")
    assert (_fresh(task).status, _fresh(task).error) == ("failed", "disk full")


def test_a_human_evaluation_setup(researcher):
    task = HumanEvalTask.objects.create(owner=researcher, name="he", error="old")
    task.mark_ready()
    stored = _fresh(task)
    assert (stored.status, stored.progress, stored.error) == ("ready", 1.0, "")
    assert stored.finished_at is not None
    task.mark_failed(error="generation failed")
    assert (_fresh(task).status, _fresh(task).error) == ("failed", "generation failed")
