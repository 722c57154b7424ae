"""The real `mlflow` client names T4DM's jobs: `mlflow.start_run(run_name=...)` is the job's display
name (the runs table's name column), `MlflowClient.update_run(name=...)` renames it, and a rename in
T4DM (PATCH /api/v1/jobs/{id}) is the name the client reads back."""

from __future__ import annotations

import pytest

from experiments.mlflow_compat.models import MLflowRun

pytestmark = pytest.mark.django_db(transaction=True)


def _job(run_id: str):
    return MLflowRun.objects.select_related("job").get(run_uuid=run_id).job


def test_start_run_names_the_job_and_renames_go_both_ways(tracking, client, researcher):
    mlflow = tracking
    mlflow.set_experiment("named-runs")
    with mlflow.start_run(run_name="baseline lr=3e-4") as run:
        mlflow.log_metric("loss", 0.5, step=1)
    run_id = run.info.run_id
    assert _job(run_id).name == "baseline lr=3e-4"

    tracker = mlflow.MlflowClient()
    tracker.update_run(run_id, name="baseline, rerun")
    assert _job(run_id).name == "baseline, rerun"
    assert tracker.get_run(run_id).info.run_name == "baseline, rerun"

    job = _job(run_id)
    response = client.patch(
        f"/api/v1/jobs/{job.public_id}",
        {"name": "the keeper"},
        content_type="application/json",
        headers={"Authorization": f"Bearer {researcher.raw_token}"},
    )
    assert response.status_code == 200, response.content
    fetched = tracker.get_run(run_id)
    assert fetched.info.run_name == "the keeper"
    assert fetched.data.tags["mlflow.runName"] == "the keeper"
    assert fetched.data.metrics == {"loss": 0.5}
