"""Issue 17 item 12: resuming from a checkpoint that `save_total_limit` already deleted was accepted
(201) and failed later on the worker. It is refused at request time (409, with the steps still on
disk); without a step, the newest checkpoint still on disk is used."""

from __future__ import annotations

import shutil

from experiments.models import Checkpoint, TrainingJob


def _job_with_checkpoints(api, researcher, demo_config, tmp_path, capture) -> tuple[str, TrainingJob]:
    with capture(execute=False):
        job_id = api.post(researcher, "/jobs", {"config_id": demo_config.public_id}).json()["job_id"]
    job = TrainingJob.objects.get(pk=int(job_id.split("-")[1]))
    job.mark_cancelled()
    for step in (5, 10, 15):
        folder = tmp_path / f"checkpoint-{step}"
        folder.mkdir()
        (folder / "adapter_model.safetensors").write_bytes(b"weights")
        Checkpoint.objects.create(job=job, step=step, path=str(folder))
    return job_id, job


def test_resuming_from_a_rotated_away_checkpoint_is_refused_at_request_time(
    api, researcher, demo_config, tmp_path, django_capture_on_commit_callbacks
):
    # given a job whose step-5 checkpoint save_total_limit deleted
    job_id, job = _job_with_checkpoints(
        api, researcher, demo_config, tmp_path, django_capture_on_commit_callbacks
    )
    shutil.rmtree(tmp_path / "checkpoint-5")
    jobs_before = TrainingJob.objects.count()

    # when resuming from it
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        response = api.post(researcher, f"/jobs/{job_id}/resume", {"step": 5})

    # then it is refused now, saying which steps are left, and nothing is queued
    assert response.status_code == 409, response.content
    error = response.json()["error"]
    assert error["code"] == "checkpoint_deleted" and "no longer on disk" in error["message"]
    assert error["details"] == {"steps_on_disk": [10, 15]}
    assert TrainingJob.objects.count() == jobs_before and not callbacks


def test_resuming_without_a_step_takes_the_newest_checkpoint_still_on_disk(
    api, researcher, demo_config, tmp_path, django_capture_on_commit_callbacks
):
    job_id, job = _job_with_checkpoints(
        api, researcher, demo_config, tmp_path, django_capture_on_commit_callbacks
    )
    shutil.rmtree(tmp_path / "checkpoint-15")
    (tmp_path / "checkpoint-10" / "adapter_model.safetensors").unlink()  # an emptied folder is no checkpoint

    with django_capture_on_commit_callbacks(execute=False):
        response = api.post(researcher, f"/jobs/{job_id}/resume", {})

    assert response.status_code == 201, response.content
    resumed = TrainingJob.objects.get(pk=int(response.json()["job_id"].split("-")[1]))
    assert resumed.resume_from.step == 5


def test_resuming_when_no_checkpoint_is_left_on_disk_is_refused(
    api, researcher, demo_config, tmp_path, django_capture_on_commit_callbacks
):
    job_id, job = _job_with_checkpoints(
        api, researcher, demo_config, tmp_path, django_capture_on_commit_callbacks
    )
    for step in (5, 10, 15):
        shutil.rmtree(tmp_path / f"checkpoint-{step}")

    for body in ({}, {"step": 15}):
        response = api.post(researcher, f"/jobs/{job_id}/resume", body)
        assert response.status_code == 409 and response.json()["error"]["details"] == {"steps_on_disk": []}
    # a config's job started with resume_from names the same check
    response = api.post(
        researcher, "/jobs", {"config_id": demo_config.public_id, "resume_from": f"{job_id}/step-10"}
    )
    assert response.status_code == 409
