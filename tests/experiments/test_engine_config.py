"""configure_training with every approach, its validation, configure_early_stopping/checkpoints,
templates, the estimate endpoint and resume."""

from __future__ import annotations

import importlib.util
import json

import pytest

from datasets_app.services import dataset_prepare
from experiments.models import Checkpoint, TrainingJob
from tests.conftest import DEMO_ROWS


@pytest.fixture
def dataset_id(researcher, artifact_root) -> str:
    return dataset_prepare(
        owner=researcher, name="demo", content=DEMO_ROWS.read_bytes(), task_type="chat"
    ).dataset.public_id


def _config(api, user, dataset_id, **fields):
    return api.post(user, "/configs", {"model_base": "t4dm-tiny", "dataset_id": dataset_id, **fields})


@pytest.mark.parametrize("approach", ["lora", "qlora", "full", "prompt_tuning"])
def test_every_local_approach_is_accepted(api, researcher, dataset_id, approach):
    response = _config(api, researcher, dataset_id, approach=approach)

    assert response.status_code == 201, response.json()
    body = response.json()
    assert body["approach"] == approach and body["estimate"]["trainable_parameters"] > 0


def test_target_modules_must_exist_in_the_model(api, researcher, dataset_id):
    response = _config(api, researcher, dataset_id, hyperparams={"target_modules": ["query", "v_proj"]})

    assert response.status_code == 400
    message = response.json()["error"]["message"]
    assert "query" in message and "q_proj" in message  # names the bad one and lists the real ones


def test_qlora_needs_bitsandbytes(api, researcher, dataset_id, monkeypatch):
    real_find_spec = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util,
        "find_spec",
        lambda name, *a: None if name == "bitsandbytes" else real_find_spec(name, *a),
    )

    response = _config(api, researcher, dataset_id, approach="qlora")

    assert response.status_code == 400 and "bitsandbytes" in response.json()["error"]["message"]


@pytest.mark.parametrize(
    ("fields", "needle"),
    [
        ({"hyperparams": {"lora_r": 0}}, "lora_r"),
        ({"hyperparams": {"device": "tpu"}}, "device"),
        ({"hyperparams": {"num_virtual_tokens": 2.5}}, "num_virtual_tokens"),
        ({"approach": "api"}, "not available"),
        ({"queue": "training-h100"}, "queue"),
        ({"early_stopping": {"metric": "val_accuracy"}}, "classification"),
    ],
)
def test_bad_configs_are_refused_with_a_reason(api, researcher, dataset_id, fields, needle):
    response = _config(api, researcher, dataset_id, **fields)

    assert response.status_code in (400, 422), response.json()
    assert needle in response.json()["error"]["message"]


def test_queue_per_gpu_class(api, researcher, dataset_id, settings, django_capture_on_commit_callbacks):
    settings.TRAINING_QUEUES = ["training", "training-h100"]
    config = _config(api, researcher, dataset_id, queue="training-h100").json()

    with django_capture_on_commit_callbacks(execute=False):
        job = api.post(researcher, "/jobs", {"config_id": config["config_id"]}).json()

    event = TrainingJob.objects.get(pk=int(job["job_id"].split("-")[1])).events.first()
    assert "training-h100" in event.message


def test_configure_early_stopping_and_checkpoints(api, researcher, demo_config):
    config_id = demo_config.public_id

    early = api.post(researcher, f"/configs/{config_id}/early-stopping", {"patience": 2, "min_delta": 0.05})
    checkpoints = api.post(
        researcher, f"/configs/{config_id}/checkpoints", {"save_steps": 20, "save_total_limit": 2}
    )

    assert early.status_code == 200, early.json()
    assert early.json() == {"config_id": config_id, "patience": 2, "min_delta": 0.05, "metric": "val_loss"}
    assert checkpoints.json() == {
        "config_id": config_id,
        "save_steps": 20,
        "save_total_limit": 2,
        "best_only": False,
    }
    stored = api.get(researcher, f"/configs/{config_id}").json()
    assert stored["early_stopping"]["patience"] == 2 and stored["checkpointing"]["save_steps"] == 20
    bad = api.post(researcher, f"/configs/{config_id}/early-stopping", {"metric": "val_accuracy"})
    assert bad.status_code == 400 and "classification" in bad.json()["error"]["message"]


def test_templates_endpoint(api, researcher):
    body = api.get(researcher, "/templates").json()

    assert body["efficient"]["lora_r"] == 8 and body["quality"]["gradient_accumulation"] == 16
    assert body["defaults"]["lora_alpha"] == 32


def test_estimate_endpoint_reads_the_shape_from_the_config(api, researcher, artifact_root, tiny_model_dir):
    tiny = api.post(researcher, "/estimate", {"model_base": "t4dm-tiny"}).json()
    llama = api.post(
        researcher, "/estimate", {"model_base": "meta-llama/Meta-Llama-3-8B", "approach": "qlora"}
    )

    real_count = json.loads((tiny_model_dir / "t4dm_tiny.json").read_text())["parameters"]
    assert tiny["total_parameters"] == real_count
    assert set(tiny) >= {"gpu_memory", "training_time", "estimated_cost", "recommended_gpu"}
    assert llama.status_code == 200 and llama.json()["total_parameters"] == 8_030_261_248
    unknown = api.post(researcher, "/estimate", {"model_base": "someone/unknown-model"}).json()
    assert unknown["gpu_memory"] == "unknown"


def test_resume_starts_a_new_job_from_a_checkpoint(
    api, researcher, demo_config, tmp_path, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=False):
        job_id = api.post(researcher, "/jobs", {"config_id": demo_config.public_id}).json()["job_id"]
    job = TrainingJob.objects.get(pk=int(job_id.split("-")[1]))
    busy = api.post(researcher, f"/jobs/{job_id}/resume", {})
    assert busy.status_code == 409
    job.mark_cancelled()
    for step in (5, 10):  # a resume needs the checkpoint's files on disk
        (tmp_path / f"checkpoint-{step}").mkdir()
        (tmp_path / f"checkpoint-{step}" / "trainer_state.json").write_text("{}")
        Checkpoint.objects.create(job=job, step=step, path=str(tmp_path / f"checkpoint-{step}"))

    with django_capture_on_commit_callbacks(execute=False):
        newest = api.post(researcher, f"/jobs/{job_id}/resume", {})
        chosen = api.post(researcher, f"/jobs/{job_id}/resume", {"step": 5})

    assert newest.status_code == 201 and chosen.status_code == 201
    resumed = TrainingJob.objects.get(pk=int(chosen.json()["job_id"].split("-")[1]))
    assert resumed.resume_from.step == 5 and resumed.config_id == job.config_id
    newest_job = TrainingJob.objects.get(pk=int(newest.json()["job_id"].split("-")[1]))
    assert newest_job.resume_from.step == 10
