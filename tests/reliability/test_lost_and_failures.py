"""Fast checks behind the fault runs: a worker that restarts frees the job it was running at once,
and training failures become messages that say what to do (real torch errors, not made-up ones)."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest
import torch
from django.conf import settings
from django.utils import timezone

from experiments.models import JobEvent, JobStatus, TrainingJob
from experiments.services import job_report_status, job_start
from experiments.training.checkpoints import CheckpointWriteError
from experiments.training.failures import describe_failure


def _heartbeat(client, **payload):
    return client.post(
        "/api/v1/worker/heartbeat",
        {"name": "gpu0@box", "queue": "training", **payload},
        content_type="application/json",
        headers={"Authorization": f"Bearer {settings.WORKER_SECRET}"},
    )


def test_a_restarted_worker_frees_the_job_it_was_running(
    client, researcher, demo_config, django_capture_on_commit_callbacks
):
    first_start = timezone.now() - timedelta(minutes=5)
    assert _heartbeat(client, started_at=first_start.isoformat()).status_code == 200
    with django_capture_on_commit_callbacks(execute=False):
        job = job_start(owner=researcher, config=demo_config)
    job_report_status(job=job, status="running", worker="gpu0@box")
    TrainingJob.objects.filter(pk=job.pk).update(heartbeat_at=timezone.now() - timedelta(seconds=2))

    # The process was killed and its supervisor started it again: same name, a new start time.
    with django_capture_on_commit_callbacks(execute=True) as callbacks:
        response = _heartbeat(client, started_at=timezone.now().isoformat())
    assert response.status_code == 200

    job.refresh_from_db()
    assert job.status == JobStatus.QUEUED and job.lost_count == 1 and job.worker == ""
    assert JobEvent.objects.filter(job=job, message__contains="gpu0@box restarted while running it").exists()
    assert len(callbacks) >= 1  # the requeued message is sent once the transaction commits


def test_a_heartbeat_from_the_same_process_does_not_free_its_job(
    client, researcher, demo_config, django_capture_on_commit_callbacks
):
    started = (timezone.now() - timedelta(minutes=5)).isoformat()
    _heartbeat(client, started_at=started)
    with django_capture_on_commit_callbacks(execute=False):
        job = job_start(owner=researcher, config=demo_config)
    job_report_status(job=job, status="running", worker="gpu0@box")
    _heartbeat(client, started_at=started, current_job_id=job.public_id)
    job.refresh_from_db()
    assert job.status == JobStatus.RUNNING and job.lost_count == 0


def test_a_cpu_allocation_that_cannot_be_met_says_what_to_change():
    with pytest.raises(RuntimeError) as caught:
        torch.empty(2**50, dtype=torch.uint8)  # 1 PiB: the allocator refuses it for real
    message = describe_failure(
        caught.value, hyperparameters={"batch_size": 32, "gradient_accumulation": 1, "max_seq_length": 2048}
    )
    assert message.startswith("out of memory on the CPU (tried to allocate 1048576.0 GiB)")
    assert "smaller batch_size (now 32" in message and "max_seq_length (now 2048)" in message
    assert "gradient_checkpointing: true" in message and "qlora" in message
    assert "alloc_cpu" not in message


def test_memory_error_and_checkpoint_errors_read_plainly():
    assert describe_failure(MemoryError()).startswith("out of memory on the CPU: the batch does not fit")
    error = CheckpointWriteError(Path("/data/jobs/job-001/checkpoint-20"), "no space left on device")
    wrapped = RuntimeError("saving failed")
    wrapped.__cause__ = error
    assert describe_failure(wrapped) == (
        "checkpoint could not be written to /data/jobs/job-001/checkpoint-20: no space left on device"
    )
    assert describe_failure(ValueError("hyperparameters.lora_r: must be >= 1")) == (
        "ValueError: hyperparameters.lora_r: must be >= 1"
    )
