"""The example workflow on the embedded default (`t4dm_up`: daphne + one real Celery worker) and in
production mode, through the API: every step's output, and a training failure retried from the train step."""

from __future__ import annotations

import time

import pytest
import torch

pytestmark = pytest.mark.e2e

STEPS = ["prepare", "validate", "configure", "train", "evaluate", "version", "promote"]


def wait_finished(http, workflow_id: str, timeout: float = 300) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        data = http.get(f"/workflows/{workflow_id}").json()
        if data["status"] in ("succeeded", "failed"):
            return data
        time.sleep(0.5)
    raise AssertionError(f"{workflow_id} did not finish in {timeout} s: {data}")


@pytest.mark.parametrize("platform_name", ["embedded_platform", "production_platform"])
def test_the_example_workflow_runs_every_step(platform_name, request):
    # Production: PostgreSQL + Redis, the web process, a training worker and the platform worker
    # (datasets queue: the workflow's steps) as separate processes (tests/platform.py).
    platform = request.getfixturevalue(platform_name)
    with platform.http() as http:
        # when
        started = http.post("/workflows/demo")
        assert started.status_code == 201, started.text
        data = wait_finished(http, started.json()["workflow_id"])

        # then
        assert data["status"] == "succeeded", data
        steps = {s["name"]: s for s in data["steps"]}
        assert [s["name"] for s in data["steps"]] == STEPS
        assert all(s["status"] == "succeeded" for s in data["steps"]), data["steps"]
        assert all(s["started_at"] and s["finished_at"] and s["attempts"] == 1 for s in data["steps"])

        prepare = steps["prepare"]["output"]
        dataset = http.get(f"/datasets/{prepare['dataset_id']}").json()
        assert dataset["statistics"]["total_samples"] == prepare["samples"] > 0
        assert sum(prepare["split"].values()) == prepare["samples"] and prepare["split"]["test"] > 0
        assert steps["validate"]["output"]["status"] in ("passed", "warning")

        configure = steps["configure"]["output"]
        config = http.get(f"/configs/{configure['config_id']}").json()
        assert config["model_base"] == "t4dm-tiny" and configure["approach"] == "lora"

        train = steps["train"]["output"]
        job = http.get(f"/jobs/{train['job_id']}").json()
        assert job["status"] == "succeeded"
        assert isinstance(train["final_loss"], float) and train["final_loss"] > 0
        assert train["best_checkpoint"]["step"] > 0

        evaluate = steps["evaluate"]["output"]
        evaluation = http.get(f"/evaluations/{evaluate['evaluation_id']}").json()
        assert evaluation["status"] == "succeeded" and evaluation["job_id"] == train["job_id"]
        assert evaluate["metrics"] == evaluation["metrics"] and evaluate["base_metrics"]
        assert evaluate["comparison_to_base"], "the evaluation must compare with the base model"

        version = steps["version"]["output"]
        registered = http.get(f"/models/{version['model_id']}/versions/{version['version']}")
        assert registered.status_code == 200, registered.text
        assert steps["promote"]["output"]["stage"] == "staging"

        summary = data["summary"]
        assert summary["dataset"]["samples"] == prepare["samples"]
        assert summary["training"]["final_loss"] == train["final_loss"]
        assert summary["version"]["ref"] == version["ref"]


@pytest.mark.skipif(
    torch.cuda.is_available(), reason="the failure is a CUDA request on a machine without one"
)
def test_a_failed_training_step_is_retried_from_that_step(embedded_platform):
    with embedded_platform.http() as http:
        # given: a workflow whose training asks for a CUDA GPU this CPU worker does not have
        started = http.post(
            "/workflows",
            json={
                "name": "fails at train",
                "source": "knowledge",
                "model_base": "t4dm-tiny",
                "approach": "lora",
                "hyperparams": {
                    "learning_rate": 3e-3,
                    "batch_size": 8,
                    "gradient_accumulation": 1,
                    "epochs": 1,
                    "max_steps": 10,
                    "lora_r": 8,
                    "lora_alpha": 16,
                    "device": "cuda",
                },
                "checkpointing": {"save_steps": 5, "save_total_limit": 2},
                "evaluation": {"max_samples": 4},
            },
        )
        assert started.status_code == 201, started.text
        workflow_id = started.json()["workflow_id"]
        failed = wait_finished(http, workflow_id)
        assert failed["status"] == "failed", failed
        steps = {s["name"]: s for s in failed["steps"]}
        assert steps["train"]["status"] == "failed"
        assert "cuda" in steps["train"]["error"].lower()
        assert [steps[n]["status"] for n in ("evaluate", "version")] == ["pending", "pending"]
        assert steps["promote"]["status"] == "skipped"
        before = {n: steps[n]["finished_at"] for n in ("prepare", "validate", "configure")}
        failed_job = steps["train"]["output"]["job_id"]

        # when: retry from the failed step with the device fixed
        retried = http.post(f"/workflows/{workflow_id}/retry", json={"hyperparams": {"device": "cpu"}})
        assert retried.status_code == 200, retried.text
        done = wait_finished(http, workflow_id)

        # then
        assert done["status"] == "succeeded", done
        steps = {s["name"]: s for s in done["steps"]}
        assert {n: steps[n]["finished_at"] for n in before} == before  # not redone
        assert all(steps[n]["attempts"] == 1 for n in before)
        assert steps["train"]["attempts"] == 2 and steps["train"]["status"] == "succeeded"
        assert steps["train"]["output"]["job_id"] != failed_job
        assert steps["train"]["output"]["reconfigured_from"] == steps["configure"]["output"]["config_id"]
        assert steps["version"]["output"]["ref"]
        # a retry of a workflow that is not failed is refused
        assert http.post(f"/workflows/{workflow_id}/retry", json={}).status_code == 409
