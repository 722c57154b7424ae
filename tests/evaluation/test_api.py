"""The evaluation API and services: requests are checked up front (clear 4xx), a queued evaluation is
run by the evaluation task (called here in-process; the e2e test runs it on a real worker)."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from experiments.evaluation.tasks import evaluate_task
from experiments.models import Evaluation, TrainingJob
from experiments.services import job_spec_for_worker, job_start
from experiments.training.engine import train
from experiments.training.reporter import MemoryReporter


@pytest.fixture
def trained_job(demo_config, django_capture_on_commit_callbacks, tmp_path_factory) -> TrainingJob:
    """A succeeded LoRA job on the tiny model: 30 real steps, its final adapter on disk (trained once
    per module; each test gets its own copy in its own job's folder)."""
    with django_capture_on_commit_callbacks(execute=False):
        job = job_start(owner=demo_config.owner, config=demo_config)
    spec = job_spec_for_worker(job=job)
    spec["hyperparameters"] = {
        **spec["hyperparameters"],
        "max_steps": 30,
        "lora_dropout": 0.0,
        "batch_size": 4,
    }
    spec["checkpointing"] = {"save_steps": 15, "save_total_limit": 2, "best_only": False}
    result = _train_once(spec, tmp_path_factory)
    job.mark_succeeded(final_model_path=result["final_model_path"])
    job.checkpoints.create(step=15, path=f"{result['output_dir']}/checkpoint-15")
    return job


_TRAINED: dict = {}


def _train_once(spec: dict, tmp_path_factory) -> dict:
    """The same spec (seeded) trains to the same files: train the first time, copy afterwards."""
    if not _TRAINED:
        result = train(spec, MemoryReporter())
        cache = tmp_path_factory.mktemp("trained-job")
        shutil.copytree(result["output_dir"], cache, dirs_exist_ok=True)
        _TRAINED.update(result=result, cache=cache)
        return result
    result, source = _TRAINED["result"], str(_TRAINED["result"]["output_dir"])
    target = Path(spec["output_dir"]).resolve()
    shutil.copytree(_TRAINED["cache"], target, dirs_exist_ok=True)
    return {
        key: value.replace(source, str(target)) if isinstance(value, str) else value
        for key, value in result.items()
    }


def _start(api, user, payload, capture) -> tuple[int, dict, list]:
    with capture(execute=False) as callbacks:
        response = api.post(user, "/evaluations", payload)
    return response.status_code, response.json(), callbacks


def test_evaluate_a_jobs_final_model_through_the_task(
    api, researcher, trained_job, django_capture_on_commit_callbacks
):
    status, body, callbacks = _start(
        api,
        researcher,
        {
            "job_id": trained_job.public_id,
            "metrics": ["perplexity", "rouge"],
            "thresholds": {"rougeL": {">=": 0.99}},
        },
        django_capture_on_commit_callbacks,
    )
    assert status == 202, body
    assert body["status"] == "queued" and body["evaluation_id"].startswith("eval-")
    assert any(cb.__qualname__.startswith("_enqueue_on_commit") for cb in callbacks)

    evaluate_task(Evaluation.objects.get().pk)

    result = api.get(researcher, f"/evaluations/{body['evaluation_id']}").json()
    assert result["status"] == "succeeded", result["error"]
    assert result["progress"] == 1.0
    assert result["metrics"]["perplexity"] < result["base_metrics"]["perplexity"]
    assert result["comparison_to_base"]["perplexity_delta"].startswith("-")
    assert result["sample_outputs"] and set(result["sample_outputs"][0]) == {
        "prompt",
        "reference",
        "generated",
    }
    assert result["job_id"] == trained_job.public_id and result["test_dataset"].endswith("@v1")
    # Project default perplexity <= 10 applies (and fails on a 30-step tiny model); accuracy is skipped.
    checks = {c["metric"]: c for c in result["threshold_results"]}
    assert checks["perplexity"]["passed"] is False and checks["rougeL"]["passed"] is False
    assert "accuracy" not in checks and result["details"]["thresholds_skipped"] == ["accuracy"]
    assert result["thresholds_passed"] is False

    examples = api.get(researcher, f"/evaluations/{body['evaluation_id']}/examples", limit=3).json()
    assert examples["sort"] == "perplexity" and len(examples["examples"]) == 3
    values = [e["scores"]["perplexity"] for e in examples["examples"]]
    assert values == sorted(values, reverse=True)  # worst first


def test_evaluate_a_checkpoint(api, researcher, trained_job, django_capture_on_commit_callbacks):
    status, body, _ = _start(
        api,
        researcher,
        {"model_path": f"{trained_job.public_id}/step-15", "metrics": ["perplexity"]},
        django_capture_on_commit_callbacks,
    )
    assert status == 202, body
    evaluate_task(Evaluation.objects.get().pk)

    result = api.get(researcher, f"/evaluations/{body['evaluation_id']}").json()
    assert result["status"] == "succeeded" and result["checkpoint_step"] == 15
    assert "perplexity_delta" in result["comparison_to_base"]


def test_compare_versions_and_models_through_the_api(
    api, researcher, trained_job, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=False):
        versions = api.post(
            researcher,
            "/compare-versions",
            {
                "version_a": f"{trained_job.public_id}/step-15",
                "version_b": trained_job.public_id,
                "metrics": ["perplexity"],
                "resamples": 200,
            },
        )
        models = api.post(
            researcher,
            "/compare-models",
            {"models": ["t4dm-tiny", trained_job.public_id], "metrics": ["perplexity"], "max_samples": 3},
        )
    assert versions.status_code == 202 and models.status_code == 202, (versions.json(), models.json())
    for evaluation in Evaluation.objects.order_by("pk"):
        evaluate_task(evaluation.pk)

    compared = api.get(researcher, f"/evaluations/{versions.json()['evaluation_id']}").json()
    assert compared["status"] == "succeeded", compared["error"]
    ppl = compared["comparison"]["metrics"]["perplexity"]
    assert ppl["ci_low"] <= ppl["ci_high"] and set(compared["comparison"]["per_example"]["perplexity"]) == {
        "wins",
        "losses",
        "ties",
    }
    many = api.get(researcher, f"/evaluations/{models.json()['evaluation_id']}").json()
    assert many["status"] == "succeeded", many["error"]
    assert many["comparison"]["models"] == ["t4dm-tiny", trained_job.public_id]
    assert len(many["comparison"]["cases"]) == 3
    # keyed by the names sent, never the server path (issue 20 item 5)
    assert many["comparison"]["best"]["perplexity"] == trained_job.public_id


@pytest.mark.parametrize(
    ("payload", "status", "code", "words"),
    [
        ({"metrics": ["accuracy"]}, 400, "invalid_metric", "'accuracy' does not fit a chat dataset"),
        ({"metrics": ["meteor"]}, 400, "invalid_metric", "unknown metric 'meteor'"),
        # One answer for every model it may not use (experiments/model_refs.py; issue 17 item 2).
        (
            {"model_path": "/nowhere/model"},
            404,
            "model_not_found",
            "no model you may use goes by that reference",
        ),
        ({"model_path": "job-999"}, 404, "model_not_found", "no model you may use goes by that reference"),
        ({"thresholds": {"accuracy": {"=>": 1}}}, 400, "invalid_thresholds", "unknown operator"),
        ({"split": "nope"}, 400, "invalid_input", "has no 'nope' split"),
    ],
)
def test_bad_requests_are_refused_with_a_clear_4xx(
    api, researcher, demo_config, tiny_model_dir, payload, status, code, words
):
    request = {
        "model_path": str(tiny_model_dir),
        "test_dataset": demo_config.dataset_version.dataset.public_id,
    }
    response = api.post(researcher, "/evaluations", {**request, **payload})

    assert response.status_code == status, response.json()
    assert response.json()["error"]["code"] == code
    assert words in response.json()["error"]["message"]
    assert not Evaluation.objects.exists()


def test_an_empty_test_split_is_refused(api, researcher, tiny_model_dir, artifact_root):
    from datasets_app.services import dataset_prepare
    from tests.conftest import DEMO_ROWS

    version = dataset_prepare(
        owner=researcher,
        name="no test",
        content=DEMO_ROWS.read_bytes(),
        split={"train": 0.9, "validation": 0.1, "test": 0.0},
    )
    response = api.post(
        researcher,
        "/evaluations",
        {"model_path": str(tiny_model_dir), "test_dataset": version.dataset.public_id},
    )

    assert response.status_code == 400
    assert response.json()["error"]["code"] == "empty_test_set"


def test_someone_elses_evaluation_is_not_found(
    api, researcher, make_user, tiny_model_dir, demo_config, django_capture_on_commit_callbacks
):
    request = {
        "model_path": str(tiny_model_dir),
        "test_dataset": demo_config.dataset_version.dataset.public_id,
    }
    status, body, _ = _start(api, researcher, request, django_capture_on_commit_callbacks)
    assert status == 202
    other = make_user("otto")

    assert api.get(other, f"/evaluations/{body['evaluation_id']}").status_code == 404
    assert api.get(researcher, "/evaluations").json()[0]["evaluation_id"] == body["evaluation_id"]


def test_project_thresholds_come_from_settings(api, researcher, settings):
    settings.QUALITY_THRESHOLDS = {"accuracy": 0.9, "perplexity": {"max": 12}}

    body = api.get(researcher, "/evaluations/thresholds").json()

    assert body["thresholds"] == {"accuracy": {">=": 0.9}, "perplexity": {"<=": 12.0}}
