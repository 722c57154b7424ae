"""Issue 17 item 3: a job's worker token reaches its own job folder and its running attempt only.

- Folders it reports (checkpoints, the final model) must resolve, symlinks and `..` included, inside
  that job's folder: another researcher's job folder, the artifact root or a link out → 400, nothing
  stored.
- It dies with the job (succeeded, failed, cancelled) and with its attempt (a requeue issues a new
  token): ingest, events, progress, checkpoints and status from it → 409, nothing stored.
"""

from __future__ import annotations

import os
from datetime import timedelta

import pytest
from django.utils import timezone

from experiments.models import Checkpoint, JobEvent, JobStatus, MetricPoint, TrainingJob
from experiments.services import job_cancel, job_start, jobs_reap_lost

pytestmark = pytest.mark.django_db


@pytest.fixture
def start(django_capture_on_commit_callbacks):
    """Start a job of ``config`` (no Celery message is sent); returns it with its worker's token."""

    def start(config) -> tuple[TrainingJob, str]:
        with django_capture_on_commit_callbacks(execute=False):
            job = job_start(owner=config.owner, config=config)
            token = job.issue_token()  # the token the (first) worker's message carries
        return job, token

    return start


def _worker(client, job: TrainingJob, token: str):
    headers = {"Authorization": f"Bearer {token}"}

    def post(what: str, body: dict):
        prefix = "ingest" if what == "metrics" else "worker"
        return client.post(
            f"/api/v1/{prefix}/jobs/{job.public_id}/{what}",
            body,
            content_type="application/json",
            headers=headers,
        )

    post.spec = lambda: client.get(f"/api/v1/worker/jobs/{job.public_id}/spec", headers=headers)
    return post


def _stored(job: TrainingJob) -> tuple[int, int, int]:
    return (
        MetricPoint.objects.filter(job=job).count(),
        Checkpoint.objects.filter(job=job).count(),
        JobEvent.objects.filter(job=job).count(),
    )


@pytest.fixture
def other_config(make_user, artifact_root):
    from datasets_app.services import dataset_prepare
    from experiments.services import training_config_create
    from tests.conftest import DEMO_ROWS

    other = make_user("oscar")
    version = dataset_prepare(owner=other, name="oscar-set", content=DEMO_ROWS.read_bytes(), task_type="chat")
    return training_config_create(
        owner=other, dataset_id=version.dataset.public_id, model_base="t4dm-tiny", approach="lora",
        hyperparams={"learning_rate": 3e-3, "epochs": 1},
    )  # fmt: skip


def test_reported_folders_must_resolve_inside_the_jobs_own_folder(
    client, start, demo_config, other_config, artifact_root, tmp_path
):
    mine, token = start(demo_config)
    theirs, _ = start(other_config)
    # The other researcher's job has a trained adapter on disk.
    their_final = os.path.join(theirs.output_dir, "final")
    os.makedirs(their_final)
    open(os.path.join(their_final, "adapter_config.json"), "w").close()
    os.makedirs(mine.output_dir)
    os.symlink(their_final, os.path.join(mine.output_dir, "link"))
    worker = _worker(client, mine, token)
    assert worker("status", {"status": "running", "worker": "w"}).status_code == 200
    before = _stored(mine)

    refused = [
        their_final,  # another job's folder under the same artifact root
        os.path.join(theirs.output_dir, "checkpoint-1"),
        str(artifact_root),
        os.path.join(str(artifact_root), "jobs"),
        mine.output_dir,  # the job folder itself, not a folder in it
        os.path.join(mine.output_dir, "link"),  # a symlink in its folder that points out of it
        os.path.join(mine.output_dir, "..", theirs.public_id, "final"),
        os.path.join(mine.output_dir + "-evil", "checkpoint-1"),  # a sibling sharing the prefix
    ]
    for path in refused:
        response = worker("checkpoints", {"step": 1, "path": path})
        assert response.status_code == 400, (path, response.content)
        assert response.json()["error"]["code"] == "path_outside_job_folder"
        final = worker("status", {"status": "succeeded", "final_model_path": path})
        assert final.status_code == 400, (path, final.content)
        assert final.json()["error"]["code"] == "path_outside_job_folder"
    assert _stored(mine) == before
    mine.refresh_from_db()
    assert mine.status == JobStatus.RUNNING and mine.final_model_path == ""

    own = os.path.join(mine.output_dir, "checkpoint-1")
    assert worker("checkpoints", {"step": 1, "path": own}).status_code == 201
    assert Checkpoint.objects.get(job=mine).path == own
    done = worker(
        "status", {"status": "succeeded", "final_model_path": os.path.join(mine.output_dir, "final")}
    )
    assert done.status_code == 200
    mine.refresh_from_db()
    assert mine.final_model_path == os.path.join(os.path.realpath(mine.output_dir), "final")


def _every_report_is_refused(worker, job: TrainingJob, code: str) -> None:
    before = _stored(job)
    calls = {
        "metrics": {"points": [{"key": "loss", "step": 99, "value": 1.0}]},
        "events": {"message": "still here"},
        "progress": {"step": 99, "total_steps": 100, "epoch": 1.0},
        "checkpoints": {"step": 99, "path": os.path.join(job.output_dir, "checkpoint-99")},
        "status": {"status": "succeeded", "final_model_path": os.path.join(job.output_dir, "final")},
    }
    for what, body in calls.items():
        response = worker(what, body)
        assert response.status_code == 409, (what, response.status_code, response.content)
        assert response.json()["error"]["code"] == code, (what, response.json())
    spec = worker.spec()
    assert spec.status_code == 409 and spec.json()["error"]["code"] == code
    assert _stored(job) == before


@pytest.mark.parametrize("end", ["succeeded", "failed", "cancelled"])
def test_a_jobs_token_dies_with_the_job(client, api, start, demo_config, end):
    job, token = start(demo_config)
    worker = _worker(client, job, token)
    assert worker("status", {"status": "running", "worker": "w"}).status_code == 200
    assert worker("metrics", {"points": [{"key": "loss", "step": 1, "value": 2.0}]}).status_code == 200
    if end == "cancelled":
        with_cancel = api.post(demo_config.owner, f"/jobs/{job.public_id}/cancel")
        assert with_cancel.status_code == 200
        # The worker sees the request, saves a checkpoint (its token still works), then stops.
        assert worker("progress", {"step": 2, "total_steps": 10, "epoch": 0.2}).json()["cancel_requested"]
        assert worker("checkpoints", {"step": 2, "path": f"{job.output_dir}/checkpoint-2"}).status_code == 201
    ended = worker("status", {"status": end, "error": "boom"})
    assert ended.status_code == 200 and ended.json()["status"] == end
    _every_report_is_refused(worker, job, "job_finished")


def test_a_job_cancelled_before_it_started_gives_its_worker_nothing_to_run(client, start, demo_config):
    job, token = start(demo_config)
    job_cancel(job=job)
    _every_report_is_refused(_worker(client, job, token), job, "job_finished")


def test_a_requeued_jobs_old_token_is_refused_and_the_new_one_works(
    client, start, demo_config, django_capture_on_commit_callbacks
):
    job, old_token = start(demo_config)
    old = _worker(client, job, old_token)
    first_attempt = old.spec().json()["attempt"]
    assert old("status", {"status": "running", "worker": "w"}).status_code == 200
    TrainingJob.objects.filter(pk=job.pk).update(heartbeat_at=timezone.now() - timedelta(hours=1))
    with django_capture_on_commit_callbacks(execute=False) as enqueued:
        [lost] = jobs_reap_lost()
    assert lost.status == JobStatus.QUEUED
    # The requeue's message (sent on commit) carries the new attempt's token.
    [send] = [c for c in enqueued if "_enqueue_on_commit" in c.__qualname__]
    [new_token] = [
        cell.cell_contents
        for cell in send.__closure__
        if isinstance(cell.cell_contents, str) and cell.cell_contents.startswith("t4job_")
    ]

    _every_report_is_refused(old, job, "attempt_superseded")
    new = _worker(client, job, new_token)
    spec = new.spec()
    assert spec.status_code == 200 and spec.json()["attempt"] == first_attempt + 1
    assert new("status", {"status": "running", "worker": "w2"}).status_code == 200
    assert new("metrics", {"points": [{"key": "loss", "step": 1, "value": 2.0}]}).status_code == 200
