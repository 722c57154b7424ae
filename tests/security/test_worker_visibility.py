"""Issue 17 item 13: every researcher saw every worker's current job. A worker's current job id is
shown to admins and to the job's owner only; anyone else sees the worker as busy, with no job id
(API and dashboard)."""

from __future__ import annotations

from experiments.models import Worker, WorkerStatus
from experiments.services import job_report_status, job_start


def test_a_workers_current_job_is_shown_to_its_owner_and_admins_only(
    client, make_user, demo_config, researcher, django_capture_on_commit_callbacks
):
    # given a worker running researcher's job
    with django_capture_on_commit_callbacks(execute=False):
        job = job_start(owner=researcher, config=demo_config)
    job_report_status(job=job, status="running", worker="gpu0@box")
    Worker.objects.create(name="gpu0@box", queue="training", current_job=job, status=WorkerStatus.BUSY)
    other, admin = make_user("oscar"), make_user("ada", role="admin")

    def listed(user) -> dict:
        response = client.get("/api/v1/workers", headers={"Authorization": f"Bearer {user.raw_token}"})
        assert response.status_code == 200
        [row] = response.json()
        return row

    # then the owner and an admin see which job it runs
    assert listed(researcher)["current_job_id"] == job.public_id
    assert listed(admin)["current_job_id"] == job.public_id
    # and another researcher sees a busy worker and no job id
    row = listed(other)
    assert row["status"] == "busy" and row["current_job_id"] is None
    assert job.public_id not in str(row)

    # and the same on the dashboard
    client.force_login(other)
    page = client.get("/").content.decode()
    assert "gpu0@box" in page and job.public_id not in page
    client.force_login(researcher)
    assert job.public_id in client.get("/").content.decode()
