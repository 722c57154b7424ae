"""Issue 17 item 11: each attempt of a job is fenced. A worker declared lost whose process keeps going
(the job already redelivered to another attempt) must not save, replace or rotate checkpoints in the
job's folder, nor write a final model; the platform refuses its reports (409). A cancel still saves a
checkpoint.

The old attempt is the real worker code (experiments.training.worker.run_job) against a live server;
the new attempt is a real engine process (`python -m experiments.training`) on the same folder.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from django.conf import settings

from experiments.models import Checkpoint, JobStatus, MetricPoint, TrainingJob
from experiments.services import training_config_create
from experiments.training import worker as worker_module
from experiments.training.checkpoints import rotate_own_checkpoints
from experiments.training.fencing import ATTEMPT_ENV, ATTEMPT_MARKER, AttemptFence
from experiments.training.http_reporter import HttpReporter, PlatformClient

pytestmark = pytest.mark.django_db(transaction=True)

REPO = Path(__file__).resolve().parents[2]


def _queued_job(config) -> tuple[TrainingJob, str]:
    """A queued job and its first attempt's token (created directly: no Celery message is sent)."""
    job = TrainingJob.objects.create(owner=config.owner, config=config, experiment=config.experiment)
    job.output_dir = str(Path(settings.ARTIFACT_ROOT) / "jobs" / job.public_id)
    job.save(update_fields=["output_dir"])
    token = job.issue_token()
    job.mark_queued()
    return job, token


def _config(demo_config, *, max_steps: int, save_steps: int, save_total_limit: int = 2):
    return training_config_create(
        owner=demo_config.owner,
        dataset_id=demo_config.dataset_version.dataset.public_id,
        model_base="t4dm-tiny",
        approach="lora",
        hyperparams={
            "learning_rate": 3e-3, "batch_size": 4, "gradient_accumulation": 1, "max_steps": max_steps,
            "logging_steps": 1, "max_seq_length": 128,
        },
        checkpointing={"save_steps": save_steps, "save_total_limit": save_total_limit},
    )  # fmt: skip


def _files(folder: Path) -> dict[str, tuple[int, int]]:
    return {
        str(path.relative_to(folder)): (path.stat().st_size, path.stat().st_mtime_ns)
        for path in sorted(folder.rglob("*"))
        if path.is_file()
    }


def test_a_superseded_attempt_writes_nothing_and_leaves_the_new_attempts_checkpoints(
    live_server, demo_config, monkeypatch, tmp_path
):
    config = _config(demo_config, max_steps=16, save_steps=4)
    job, old_token = _queued_job(config)
    folder = Path(job.output_dir)
    seen: dict = {}

    def redeliver() -> None:
        """What happens while the old worker is frozen: the platform declares it lost and a new attempt
        runs the job to its end in the same folder."""
        row = TrainingJob.objects.get(pk=job.pk)
        new_token = row.issue_token()  # what services._job_lost does
        row.mark_lost_and_requeued()
        client = PlatformClient(live_server.url, job.public_id, new_token)
        spec = client.spec()
        seen["new_attempt"] = spec["attempt"]
        client.status("running", worker="new")
        spec["hyperparameters"]["max_steps"] = 12
        spec_path = tmp_path / "new.json"
        spec_path.write_text(json.dumps(spec))
        run = subprocess.run(
            [sys.executable, "-m", "experiments.training", "--config", str(spec_path)],
            cwd=REPO, env={**os.environ, ATTEMPT_ENV: str(spec["attempt"])},
            capture_output=True, text=True, timeout=300,
        )  # fmt: skip
        assert run.returncode == 0, run.stderr[-3000:]
        client.close()
        seen["new_files"] = {
            name: meta
            for name, meta in _files(folder).items()
            if not name.startswith(".") and not name.startswith("checkpoint-4/")
        }

    class FrozenThenWoken(HttpReporter):
        """The old worker's reporter; at step 6 the worker 'freezes' while the job is redelivered."""

        def progress(self, *, step: int, total_steps: int, epoch: float) -> None:
            super().progress(step=step, total_steps=total_steps, epoch=epoch)
            if step == 6 and "new_files" not in seen:
                time.sleep(0.6)  # the checkpoint at step 4 and its metrics reach the platform
                seen["old_checkpoints"] = sorted(p.name for p in folder.glob("checkpoint-*"))
                redeliver()

    monkeypatch.setattr(worker_module, "HttpReporter", FrozenThenWoken)
    outcome = worker_module.run_job(
        server_url=live_server.url, job_id=job.public_id, token=old_token, name="old"
    )

    assert outcome == "abandoned"  # fenced: it stopped without writing and without reporting an end
    assert seen["old_checkpoints"] == ["checkpoint-4"]
    assert seen["new_attempt"] == 2
    new_files = seen["new_files"]
    assert {"checkpoint-8/" + ATTEMPT_MARKER, "checkpoint-12/" + ATTEMPT_MARKER} <= set(new_files)
    assert any(name.startswith("final/") for name in new_files)
    # Every file the new attempt wrote is still there, unchanged: the old run neither saved checkpoint-8
    # over it, nor rotated its checkpoints away, nor wrote its own final model.
    after = _files(folder)
    assert {name: after.get(name) for name in new_files} == new_files
    for name in ("checkpoint-8", "checkpoint-12"):
        assert (folder / name / ATTEMPT_MARKER).read_text() == "2"
    assert not [p for p in (folder / ".staging").rglob("*") if p.is_file()]
    # The platform kept nothing the old run sent after it was superseded.
    assert set(Checkpoint.objects.filter(job=job).values_list("step", flat=True)) <= {4}
    assert not MetricPoint.objects.filter(job=job, step__gt=6).exists()
    job.refresh_from_db()
    assert job.status == JobStatus.RUNNING and job.worker == "new" and job.attempt == 2


def test_rotation_never_deletes_a_later_attempts_checkpoint(tmp_path):
    """The window between a fence check and the rotation: the old attempt rotates after the new one
    saved. transformers' rotation would delete the new attempt's older checkpoint; this one does not."""
    for step, attempt in ((2, 1), (4, 1), (6, 2), (8, 2), (10, 1)):
        folder = tmp_path / f"checkpoint-{step}"
        folder.mkdir()
        (folder / ATTEMPT_MARKER).write_text(str(attempt))
        os.utime(folder, (step, step))  # mtime order = step order
    old = AttemptFence(tmp_path, 1)
    rotate_own_checkpoints(tmp_path, 2, None, old)
    assert sorted(p.name for p in tmp_path.glob("checkpoint-*")) == [
        "checkpoint-10",
        "checkpoint-6",
        "checkpoint-8",
    ]
