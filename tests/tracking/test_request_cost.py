"""The fixed database cost of one small tracking request, pinned so it cannot grow back: a one-step
ingest and a one-step MLflow `log-batch` read the user's roles once (the API's role check and the
sharing check of the run or job share it), beside the token lookup and the writes themselves."""

from __future__ import annotations

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from experiments.models import MetricPoint, TrainingJob

pytestmark = pytest.mark.django_db


def _role_queries(queries) -> int:
    return sum('"auth_user_groups"' in q["sql"] for q in queries)


@pytest.fixture
def mlflow_run(client, researcher):
    headers = {"Authorization": f"Bearer {researcher.raw_token}"}

    def post(path, data):
        return client.post(f"/api/2.0/mlflow/{path}", data, content_type="application/json", headers=headers)

    experiment_id = post("experiments/create", {"name": "cost"}).json()["experiment_id"]
    run_id = post("runs/create", {"experiment_id": experiment_id}).json()["run"]["info"]["run_id"]
    return post, run_id


def _one_step(step: int) -> list[dict]:
    return [
        {"key": "loss", "value": 1.0, "step": step, "timestamp": 6000},
        {"key": "lr", "value": 0.1, "step": step, "timestamp": 6000},
    ]


def test_a_one_step_mlflow_log_batch_reads_the_roles_once(mlflow_run, django_assert_max_num_queries):
    post, run_id = mlflow_run
    post("runs/log-batch", {"run_id": run_id, "metrics": _one_step(0)})  # the token's "last used" write
    with CaptureQueriesContext(connection) as seen, django_assert_max_num_queries(12):
        response = post("runs/log-batch", {"run_id": run_id, "metrics": _one_step(1)})
    assert response.status_code == 200, response.content
    assert _role_queries(seen.captured_queries) == 1
    job = TrainingJob.objects.get(mlflow_run__run_uuid=run_id)
    assert MetricPoint.objects.filter(job=job, step=1).count() == 2


def test_a_one_step_ingest_with_a_user_token_reads_the_roles_once(
    mlflow_run, client, researcher, django_assert_max_num_queries
):
    _, run_id = mlflow_run
    job = TrainingJob.objects.get(mlflow_run__run_uuid=run_id)
    headers = {"Authorization": f"Bearer {researcher.raw_token}"}

    def ingest(step: int):
        points = [{"key": "loss", "step": step, "value": 1.0}, {"key": "lr", "step": step, "value": 0.1}]
        return client.post(
            f"/api/v1/ingest/jobs/{job.public_id}/metrics",
            {"points": points},
            content_type="application/json",
            headers=headers,
        )

    ingest(0)
    with CaptureQueriesContext(connection) as seen, django_assert_max_num_queries(10):
        response = ingest(1)
    assert response.status_code == 200, response.content
    assert response.json() == {"created": 2, "duplicates": 0}
    assert _role_queries(seen.captured_queries) == 1


def test_a_role_taken_away_counts_at_the_next_request(mlflow_run, researcher):
    """Roles are kept for one request only: an evaluator (no training role) is refused at once."""
    from django.contrib.auth.models import Group

    post, run_id = mlflow_run
    assert post("runs/log-batch", {"run_id": run_id, "metrics": _one_step(0)}).status_code == 200
    researcher.groups.remove(Group.objects.get(name="researcher"))
    assert post("runs/log-batch", {"run_id": run_id, "metrics": _one_step(1)}).status_code == 403
