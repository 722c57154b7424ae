"""Time estimates use the device the job would run on, at the speed its workers measured: a succeeded
job's final status report carries the worker's tokens/s, the JobStatusChanged subscriber keeps a
running mean per worker, model size class, approach and device (WorkerThroughput), and the estimate
quotes it, CPU workers included (issue 20 item 3)."""

from __future__ import annotations

import pytest
from django.test import Client
from django.utils import timezone

from experiments.models import TrainingJob, Worker, WorkerThroughput


def _finish_a_job(api, researcher, config, captured, *, worker: str, result: dict) -> TrainingJob:
    with captured(execute=False):  # the Celery message is not sent
        job_id = api.post(researcher, "/jobs", {"config_id": config.public_id}).json()["job_id"]
    job = TrainingJob.objects.get(pk=int(job_id.split("-")[1]))
    client = Client(headers={"Authorization": f"Bearer {job.issue_token()}"})

    def post(path, data):
        return client.post(f"/api/v1/worker/jobs/{job_id}/{path}", data, content_type="application/json")

    assert post("status", {"status": "running", "worker": worker}).status_code == 200
    with captured(execute=True):  # the subscribers that run after the commit
        assert post("status", {"status": "succeeded", "result": result}).status_code == 200
    return job


def test_a_cpu_workers_measured_speed_times_the_estimate(
    api, researcher, demo_config, django_capture_on_commit_callbacks
):
    Worker.objects.create(name="cpu0@box", gpu_count=0, last_heartbeat_at=timezone.now())
    before = api.post(researcher, "/estimate", {"model_base": "t4dm-tiny"}).json()
    assert before["training_device"] == "cpu" and before["training_time"].startswith("unknown")

    for rate in (100.0, 300.0):
        _finish_a_job(
            api,
            researcher,
            demo_config,
            django_capture_on_commit_callbacks,
            worker="cpu0@box",
            result={"tokens_per_sec": rate, "device": "cpu", "processes": 1, "total_parameters": 10**6},
        )

    row = WorkerThroughput.objects.get()
    assert (row.worker.name, row.size_class, row.approach, row.device) == ("cpu0@box", "<0.1B", "lora", "cpu")
    assert row.samples == 2 and row.tokens_per_sec == pytest.approx(200.0)

    after = api.post(researcher, "/estimate", {"model_base": "t4dm-tiny", "approach": "lora"}).json()
    assert after["training_device"] == "cpu" and after["time_basis"] == "measured"
    assert after["tokens_per_sec"] == 200 and after["size_class"] == "<0.1B"
    assert after["training_time"].endswith(" on cpu") and not after["training_time"].startswith("unknown")
    assert "measured on worker cpu0@box: 200 tokens/s over 2 jobs" in after["basis"]
    # another approach of the same size has no measurement: no time is made up
    prompt = api.post(
        researcher, "/estimate", {"model_base": "t4dm-tiny", "approach": "prompt_tuning"}
    ).json()
    assert prompt["time_basis"] is None and prompt["training_time"].startswith("unknown")


def test_runs_that_cannot_time_one_device_are_not_recorded(
    api, researcher, demo_config, django_capture_on_commit_callbacks
):
    Worker.objects.create(name="gpu0@box", gpu_count=2, gpu_name="NVIDIA H100 80GB HBM3")
    for worker, result in (
        ("gpu0@box", {"tokens_per_sec": 5000.0, "device": "NVIDIA H100 80GB HBM3", "processes": 2}),
        ("unregistered@box", {"tokens_per_sec": 5000.0, "device": "cpu", "processes": 1}),
        ("gpu0@box", {"tokens_per_sec": None, "processes": 1}),
    ):
        _finish_a_job(
            api, researcher, demo_config, django_capture_on_commit_callbacks, worker=worker, result=result
        )
    assert not WorkerThroughput.objects.exists()


def test_a_gpu_workers_measurement_is_used_for_its_gpu_only(api, researcher, artifact_root):
    h200 = Worker.objects.create(
        name="gpu0@box",
        gpu_count=1,
        gpu_name="NVIDIA H200",
        gpu_memory_total_mb=143771,
        last_heartbeat_at=timezone.now(),
    )
    WorkerThroughput.objects.create(
        worker=h200, size_class="<10B", approach="lora", device="NVIDIA H200", tokens_per_sec=9000, samples=3
    )
    lora = api.post(researcher, "/estimate", {"model_base": "llama-3-8b", "approach": "lora"}).json()
    assert lora["training_device"] == "H200-141GB" and lora["time_basis"] == "measured"
    assert lora["tokens_per_sec"] == 9000
    assert "measured on worker gpu0@box: 9000 tokens/s over 3 jobs" in lora["basis"]
    # a 1B model is another size class: the assumed-MFU model, said so
    small = api.post(researcher, "/estimate", {"model_base": "llama-3.2-1b", "approach": "lora"}).json()
    assert small["time_basis"] == "mfu" and "MFU assumed on H200-141GB" in small["time_source"]


@pytest.mark.django_db(transaction=True)
def test_a_real_tiny_training_job_reports_its_speed_through_the_worker_api(live_server, demo_config):
    """The real worker loop (experiments.training.worker.run_job) trains t4dm-tiny on the CPU against a
    live server; its final report records the measured speed and the estimate then uses it."""
    from experiments import services
    from experiments.training import worker as worker_module

    Worker.objects.create(name="cpu-test@box", gpu_count=0, last_heartbeat_at=timezone.now())
    config = services.training_config_create(
        owner=demo_config.owner,
        dataset_id=demo_config.dataset_version.dataset.public_id,
        model_base="t4dm-tiny",
        approach="lora",
        hyperparams={"batch_size": 2, "gradient_accumulation": 1, "max_steps": 6, "max_seq_length": 64},
    )
    job = TrainingJob.objects.create(owner=config.owner, config=config, experiment=config.experiment)
    from pathlib import Path

    from django.conf import settings

    job.output_dir = str(Path(settings.ARTIFACT_ROOT) / "jobs" / job.public_id)
    job.save(update_fields=["output_dir"])
    token = job.issue_token()
    job.mark_queued()

    outcome = worker_module.run_job(
        server_url=live_server.url, job_id=job.public_id, token=token, name="cpu-test@box"
    )

    assert outcome == "succeeded"
    row = WorkerThroughput.objects.get(worker__name="cpu-test@box")
    assert (row.size_class, row.approach, row.device, row.samples) == ("<0.1B", "lora", "cpu", 1)
    assert row.tokens_per_sec > 0
    estimate = services.resource_estimate(owner=config.owner, model_base="t4dm-tiny", approach="lora")
    assert estimate["training_device"] == "cpu" and estimate["time_basis"] == "measured"
    assert estimate["tokens_per_sec"] == round(row.tokens_per_sec)
    assert "measured on worker cpu-test@box" in estimate["basis"]


def test_the_config_forms_estimate_names_the_device_and_the_measurement(client, demo_config):
    """The form's panel has a row for each (static/js/config_form.js fills them from the form's live
    estimate; the browser test tests/experiments/test_estimate_panel_browser.py reads them)."""
    worker = Worker.objects.create(name="cpu0@box", gpu_count=0, last_heartbeat_at=timezone.now())
    WorkerThroughput.objects.create(
        worker=worker, size_class="<0.1B", approach="lora", device="cpu", tokens_per_sec=1234.4, samples=3
    )
    client.force_login(demo_config.owner)
    page = client.get("/configs/new/").content.decode()
    assert 'id="est-training_device"' in page and 'id="est-time_source"' in page
    estimate = client.post(
        "/configs/estimate/",
        {"model_base": "t4dm-tiny", "approach": "lora"},
        content_type="application/json",
    ).json()["estimate"]
    assert estimate["training_device"] == "cpu"
    assert estimate["time_source"].startswith("measured on worker cpu0@box: 1234 tokens/s over 3 jobs")
