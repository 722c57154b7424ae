from __future__ import annotations

import pytest

from experiments.models import Checkpoint, JobStatus, TrainingJob


@pytest.fixture
def dataset_id(api, researcher, artifact_root):
    from tests.conftest import DEMO_ROWS

    response = api.upload(
        researcher, "/datasets", content=DEMO_ROWS.read_bytes(), name="kb.jsonl", task_type="chat"
    )
    assert response.status_code == 201, response.content
    return response.json()["dataset_id"]


def test_upload_returns_the_seed_dataset_shape_and_recognises_the_same_content(api, researcher, dataset_id):
    from tests.conftest import DEMO_ROWS

    body = api.get(researcher, f"/datasets/{dataset_id}").json()
    assert set(body) == {"dataset_id", "format", "task_type", "statistics", "validation", "output_path"}
    stats = body["statistics"]
    assert (
        stats["total_samples"] == stats["train_samples"] + stats["val_samples"] + stats["test_samples"] == 60
    )
    assert stats["avg_tokens_input"] > 0 and stats["avg_tokens_output"] > 0
    again = api.upload(researcher, "/datasets", content=DEMO_ROWS.read_bytes(), task_type="chat").json()
    assert again["dataset_id"] == dataset_id


def test_a_bad_row_names_its_line_and_stores_nothing(api, researcher, artifact_root):
    from datasets_app.models import Dataset

    content = b'{"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "yo"}]}\n{"messages": [oops]}\n'
    response = api.upload(researcher, "/datasets", content=content, task_type="chat")
    assert response.status_code == 400
    assert response.json()["error"]["message"].startswith("line 2:")
    assert Dataset.objects.count() == 0


def test_configure_training_returns_the_seed_shape_with_defaults(
    api, researcher, dataset_id, settings, monkeypatch
):
    settings.HUB_MODELS = True  # a hub id trains only where workers can download it (issue 19)
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    response = api.post(researcher, "/configs", {"model_base": "llama-3-8b", "dataset_id": dataset_id})
    assert response.status_code == 201, response.content
    body = response.json()
    assert body["approach"] == "lora"
    hp = body["hyperparameters"]
    assert (hp["learning_rate"], hp["batch_size"], hp["gradient_accumulation"], hp["epochs"]) == (
        2e-5,
        4,
        4,
        3,
    )
    assert (hp["warmup_ratio"], hp["lora_r"], hp["lora_alpha"], hp["lora_dropout"]) == (0.1, 16, 32, 0.1)
    assert body["estimated_time"] != "unknown" and body["estimated_cost"].startswith("$")
    assert body["config_id"].startswith("cfg-")


def test_templates_and_bad_hyperparameters(api, researcher, dataset_id):
    quality = api.post(
        researcher, "/configs", {"model_base": "t4dm-tiny", "dataset_id": dataset_id, "template": "quality"}
    ).json()
    assert (
        quality["hyperparameters"]["lora_r"] == 32
        and quality["hyperparameters"]["gradient_accumulation"] == 16
    )
    bad = api.post(
        researcher,
        "/configs",
        {"model_base": "t4dm-tiny", "dataset_id": dataset_id, "hyperparams": {"lora_r": 0}},
    )
    assert bad.status_code == 400 and "lora_r" in bad.json()["error"]["message"]
    typo = api.post(
        researcher,
        "/configs",
        {"model_base": "t4dm-tiny", "dataset_id": dataset_id, "hyperparams": {"learnin_rate": 1}},
    )
    assert typo.status_code == 400 and "learnin_rate" in typo.json()["error"]["message"]
    missing = api.post(researcher, "/configs", {"model_base": "t4dm-tiny", "dataset_id": "ds-999"})
    assert missing.status_code == 404


def test_start_monitor_and_cancel_a_queued_job(
    api, researcher, demo_config, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        response = api.post(researcher, "/jobs", {"config_id": demo_config.public_id})
    assert response.status_code == 201
    assert any(
        cb.__qualname__.startswith("job_enqueue_on_commit") for cb in callbacks
    )  # enqueued after commit
    body = response.json()
    assert set(body) >= {"job_id", "status", "started_at", "progress", "metrics"}
    assert body["status"] == "queued" and body["progress"] == {"epoch": 0.0, "step": 0, "total_steps": 0}
    job_id = body["job_id"]
    assert api.get(researcher, f"/jobs/{job_id}").json()["status"] == "queued"
    cancelled = api.post(researcher, f"/jobs/{job_id}/cancel")
    assert cancelled.json()["status"] == "cancelled"
    again = api.post(researcher, f"/jobs/{job_id}/cancel")
    assert again.status_code == 409


def test_the_worker_flow_with_a_job_token(api, researcher, demo_config, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=False):
        job_id = api.post(researcher, "/jobs", {"config_id": demo_config.public_id}).json()["job_id"]
    job = TrainingJob.objects.get(pk=int(job_id.split("-")[1]))
    token = job.issue_token()
    spec = api.get(None, f"/worker/jobs/{job_id}/spec", HTTP_AUTHORIZATION=f"Bearer {token}")
    assert spec.status_code == 401  # the token travels in the header, not as a query parameter
    from django.test import Client

    worker = Client(headers={"Authorization": f"Bearer {token}"})
    spec = worker.get(f"/api/v1/worker/jobs/{job_id}/spec").json()
    assert spec["approach"] == "lora" and spec["dataset"]["train"].endswith("train.parquet")
    assert spec["resume_from_checkpoint"] is None

    def post(path, data):
        return worker.post(f"/api/v1/worker/jobs/{job_id}/{path}", data, content_type="application/json")  # noqa: E731

    assert post("status", {"status": "running", "worker": "w1"}).json() == {
        "status": "running",
        "cancel_requested": False,
    }
    assert post("progress", {"step": 3, "total_steps": 10, "epoch": 0.3}).status_code == 200
    assert (
        post(
            "checkpoints", {"step": 3, "path": f"{job.output_dir}/checkpoint-3", "metrics": {"loss": 1.0}}
        ).status_code
        == 201
    )
    api.post(researcher, f"/jobs/{job_id}/cancel")
    assert post("progress", {"step": 4, "total_steps": 10, "epoch": 0.4}).json()["cancel_requested"] is True
    assert post("status", {"status": "cancelled"}).json()["status"] == "cancelled"
    assert post("status", {"status": "succeeded"}).status_code == 409
    job.refresh_from_db()
    assert job.status == JobStatus.CANCELLED and job.step == 4 and job.worker == "w1"
    assert Checkpoint.objects.get(job=job).step == 3
    messages = list(job.events.values_list("message", flat=True))
    assert any("started training" in m for m in messages) and any("checkpoint" in m for m in messages)


def test_a_cancelled_job_gives_the_worker_nothing_to_run(
    api, researcher, demo_config, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=False):
        job_id = api.post(researcher, "/jobs", {"config_id": demo_config.public_id}).json()["job_id"]
    api.post(researcher, f"/jobs/{job_id}/cancel")
    job = TrainingJob.objects.get(pk=int(job_id.split("-")[1]))
    from django.test import Client

    response = Client(headers={"Authorization": f"Bearer {job.issue_token()}"}).get(
        f"/api/v1/worker/jobs/{job_id}/spec"
    )
    assert response.status_code == 409


def test_job_transitions_set_their_fields_together(demo_config):
    job = TrainingJob.objects.create(
        owner=demo_config.owner, config=demo_config, experiment=demo_config.experiment
    )
    assert job.status == JobStatus.VALIDATING
    job.mark_queued()
    job.mark_running(worker="w")
    assert job.started_at is not None and job.heartbeat_at is not None
    job.mark_failed(error="boom")
    job.refresh_from_db()
    assert (
        job.status == JobStatus.FAILED
        and job.error == "boom"
        and job.finished_at is not None
        and job.is_terminal
    )


def test_the_best_checkpoint_reported_at_success_is_marked(
    api, researcher, demo_config, django_capture_on_commit_callbacks
):
    from django.test import Client

    with django_capture_on_commit_callbacks(execute=False):
        job_id = api.post(researcher, "/jobs", {"config_id": demo_config.public_id}).json()["job_id"]
    job = TrainingJob.objects.get(pk=int(job_id.split("-")[1]))
    worker = Client(headers={"Authorization": f"Bearer {job.issue_token()}"})

    def post(path, data):
        return worker.post(f"/api/v1/worker/jobs/{job_id}/{path}", data, content_type="application/json")

    post("status", {"status": "running", "worker": "w1"})
    for step in (10, 20, 30):
        # Reported folders must lie under the artifact root (the job's output_dir is).
        post(
            "checkpoints",
            {"step": step, "path": f"{job.output_dir}/checkpoint-{step}", "metrics": {"val_loss": 1.0}},
        )
    with django_capture_on_commit_callbacks(execute=False):
        best = f"{job.output_dir}/checkpoint-20"
        done = post("status", {"status": "succeeded", "result": {"best_checkpoint": best}})
    assert done.status_code == 200
    assert list(Checkpoint.objects.filter(job=job, is_best=True).values_list("step", flat=True)) == [20]


def test_a_worker_hands_back_a_job_it_cannot_hold_and_it_fails_after_the_limit(
    api, researcher, demo_config, django_capture_on_commit_callbacks, settings
):
    from django.test import Client

    settings.JOB_MAX_REFUSALS = 2
    with django_capture_on_commit_callbacks(execute=False):
        job_id = api.post(researcher, "/jobs", {"config_id": demo_config.public_id}).json()["job_id"]
    job = TrainingJob.objects.get(pk=int(job_id.split("-")[1]))
    token = job.issue_token()
    worker = Client(headers={"Authorization": f"Bearer {token}"})
    spec = worker.get(f"/api/v1/worker/jobs/{job_id}/spec").json()
    assert spec["resources"]["gpus"] == 1 and spec["resources"]["gpu_memory_mb"] > 0  # from the estimate
    reason = "needs 40,000 MiB of GPU memory (estimate); this worker offers 23,034 MiB on NVIDIA L4"

    with django_capture_on_commit_callbacks(execute=False) as enqueued:
        first = worker.post(
            f"/api/v1/worker/jobs/{job_id}/refuse",
            {"worker": "l4-box", "reason": reason},
            content_type="application/json",
        )
    assert first.status_code == 200 and first.json() == {"requeued": True, "refusals": 1}
    # a new message, with a new token, for another worker
    assert sum("_enqueue_on_commit" in callback.__qualname__ for callback in enqueued) == 1
    stale = worker.get(f"/api/v1/worker/jobs/{job_id}/spec")  # the old token is void: its attempt is over
    assert stale.status_code == 409 and stale.json()["error"]["code"] == "attempt_superseded"
    job.refresh_from_db()
    assert job.status == "queued"

    new_token = job.issue_token()
    again = Client(headers={"Authorization": f"Bearer {new_token}"}).post(
        f"/api/v1/worker/jobs/{job_id}/refuse",
        {"worker": "l4-box", "reason": reason},
        content_type="application/json",
    )
    assert again.json() == {"requeued": False, "refusals": 2}
    job.refresh_from_db()
    assert job.status == "failed" and "no worker could take it after 2 refusals" in job.error
    assert reason in job.error
    events = [e.message for e in job.events.order_by("id")]
    assert sum(m.startswith("refused by l4-box: needs 40,000 MiB") for m in events) == 2


def test_a_redelivered_job_resumes_from_its_newest_checkpoint_within_its_stored_metrics(
    demo_config, tmp_path
):
    # The worker reported checkpoint-5 and metrics up to step 12; then, declared lost but still running
    # for a moment, it saved checkpoint-10 and checkpoint-15 (renamed into place: complete) and rotated
    # checkpoint-5 away, its reports and metrics refused.
    from experiments.ingest import PointIn, metric_points_ingest
    from experiments.models import Checkpoint
    from experiments.services import job_report_status, job_spec_for_worker

    job = TrainingJob.objects.create(
        owner=demo_config.owner, config=demo_config, experiment=demo_config.experiment
    )
    job.output_dir = str(tmp_path / "job")
    job.save(update_fields=["output_dir"])
    Checkpoint.objects.create(job=job, step=5, path=f"{job.output_dir}/checkpoint-5")
    for step in (10, 15):
        (tmp_path / "job" / f"checkpoint-{step}").mkdir(parents=True)
    (tmp_path / "job" / ".staging" / "checkpoint-20").mkdir(parents=True)  # half-written: never used
    (tmp_path / "job" / "checkpoint-notes").mkdir()
    assert job_spec_for_worker(job=job)["resume_from_checkpoint"] is None  # no metrics stored: from the start

    metric_points_ingest(job=job, points=[PointIn("loss", s, 1.0 / s) for s in range(1, 13)])
    # checkpoint-15 is past step 12: resuming there would leave steps 13-15 out of the series.
    assert job_spec_for_worker(job=job)["resume_from_checkpoint"] == f"{job.output_dir}/checkpoint-10"

    job.mark_queued()
    job.mark_running(worker="w1")
    job.step = 12
    job.save()
    job.status = "queued"  # requeued after the lost verdict
    job.save(update_fields=["status"])
    job_report_status(job=job, status="running", worker="w2")
    assert job.events.filter(message__contains="from its checkpoint at step 10").exists()

    metric_points_ingest(job=job, points=[PointIn("loss", s, 1.0 / s) for s in range(13, 18)])
    assert job_spec_for_worker(job=job)["resume_from_checkpoint"] == f"{job.output_dir}/checkpoint-15"
