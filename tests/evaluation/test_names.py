"""Issue 20 item 5: evaluations and comparisons name every model by what the caller sent (job id,
checkpoint or version ref, model name); the server paths the worker loaded never appear in a response."""

from __future__ import annotations

import json

import pytest

from experiments.evaluation.tasks import evaluate_task
from experiments.models import Evaluation, TrainingJob
from experiments.services import job_spec_for_worker, job_start
from experiments.training.engine import train
from experiments.training.reporter import MemoryReporter


@pytest.fixture
def trained_job(demo_config, django_capture_on_commit_callbacks) -> TrainingJob:
    with django_capture_on_commit_callbacks(execute=False):
        job = job_start(owner=demo_config.owner, config=demo_config)
    spec = job_spec_for_worker(job=job)
    spec["hyperparameters"] = {**spec["hyperparameters"], "max_steps": 4, "batch_size": 4}
    spec["checkpointing"] = {"save_steps": 2, "save_total_limit": 2, "best_only": False}
    result = train(spec, MemoryReporter())
    job.mark_succeeded(final_model_path=result["final_model_path"])
    job.checkpoints.create(step=2, path=f"{result['output_dir']}/checkpoint-2")
    return job


def _server_paths(settings) -> list[str]:
    return [str(settings.ARTIFACT_ROOT), str(settings.TINY_MODEL_DIR), str(settings.DATA_DIR)]


def _assert_no_server_path(body: dict, settings) -> None:
    text = json.dumps(body)
    for path in _server_paths(settings):
        assert path not in text, f"{path} in {text[:2000]}"


def _run_all(api, user, capture, requests: list[tuple[str, dict]]) -> list[dict]:
    with capture(execute=False):
        started = [api.post(user, url, payload) for url, payload in requests]
    assert all(r.status_code == 202 for r in started), [r.json() for r in started]
    for evaluation in Evaluation.objects.order_by("pk"):
        evaluate_task(evaluation.pk)
    return [api.get(user, f"/evaluations/{r.json()['evaluation_id']}").json() for r in started]


def test_compare_models_keys_results_by_the_names_sent(
    api, researcher, trained_job, settings, django_capture_on_commit_callbacks
):
    job = trained_job.public_id
    names = ["t4dm-tiny", job, f"{job}/step-2"]
    (compared,) = _run_all(
        api,
        researcher,
        django_capture_on_commit_callbacks,
        [("/compare-models", {"models": names, "metrics": ["perplexity"], "max_samples": 2})],
    )

    assert compared["status"] == "succeeded", compared["error"]
    comparison = compared["comparison"]
    assert comparison["models"] == names
    assert list(comparison["aggregates"]) == names
    assert comparison["best"]["perplexity"] in names
    for case in comparison["cases"]:
        assert [output["model"] for output in case["outputs"]] == names
    assert compared["model_path"] == "t4dm-tiny"
    _assert_no_server_path(compared, settings)
    listed = api.get(researcher, "/evaluations").json()
    _assert_no_server_path(listed, settings)


def test_evaluations_report_the_name_sent_never_the_server_path(
    api, researcher, trained_job, settings, django_capture_on_commit_callbacks
):
    job = trained_job.public_id
    by_job, by_checkpoint, by_id = _run_all(
        api,
        researcher,
        django_capture_on_commit_callbacks,
        [
            ("/evaluations", {"model_path": job, "metrics": ["perplexity"], "max_samples": 2}),
            ("/evaluations", {"model_path": f"{job}/step-2", "metrics": ["perplexity"], "max_samples": 2}),
            ("/evaluations", {"job_id": job, "metrics": ["perplexity"], "max_samples": 2}),
        ],
    )

    for result in (by_job, by_checkpoint, by_id):
        assert result["status"] == "succeeded", result["error"]
        assert result["base_model"] == "t4dm-tiny"
        _assert_no_server_path(result, settings)
    assert by_job["model_path"] == job and by_id["model_path"] == job
    assert by_checkpoint["model_path"] == f"{job}/step-2"


def test_compare_versions_names_both_sides(
    api, researcher, trained_job, settings, django_capture_on_commit_callbacks
):
    job = trained_job.public_id
    (compared,) = _run_all(
        api,
        researcher,
        django_capture_on_commit_callbacks,
        [
            (
                "/compare-versions",
                {
                    "version_a": f"{job}/step-2",
                    "version_b": job,
                    "metrics": ["perplexity"],
                    "resamples": 100,
                    "max_samples": 2,
                },
            )
        ],
    )

    assert compared["status"] == "succeeded", compared["error"]
    assert compared["model_path"] == job and compared["base_model"] == f"{job}/step-2"
    _assert_no_server_path(compared, settings)
