"""The MLflow-compatible API with the real `mlflow` client: MLflow's semantics for several values at one
step, latest values as MLflow picks them, and runs that are tracking-only (never reaped, never handed
to a worker)."""

from __future__ import annotations

import gc
from datetime import timedelta

import pytest
from django.utils import timezone

from experiments.mlflow_compat.models import MLflowRun
from experiments.models import JobStatus, MetricPoint

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def mlflow_client(live_server, researcher, monkeypatch):
    from mlflow import MlflowClient

    monkeypatch.setenv("MLFLOW_TRACKING_TOKEN", researcher.raw_token)
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    yield MlflowClient(tracking_uri=live_server.url)
    # The client keeps its connections open (a cached requests session): close them while the live
    # server still runs, so that none of its request threads outlives the test's database.
    from mlflow.utils.request_utils import _cached_get_request_session

    _cached_get_request_session.cache_clear()
    gc.collect()


def _run_id(client, name: str = "semantics") -> str:
    experiment_id = client.create_experiment(name)
    return client.create_run(experiment_id).info.run_id


def _history(client, run_id: str, key: str) -> list[tuple[int, int, float]]:
    return [(m.step, m.timestamp, m.value) for m in client.get_metric_history(run_id, key)]


def test_three_log_metric_calls_without_a_step_keep_three_values(mlflow_client):
    run_id = _run_id(mlflow_client)
    for i, value in enumerate((0.5, 0.7, 0.6)):
        mlflow_client.log_metric(run_id, "accuracy", value, timestamp=1_000 + i)
    assert _history(mlflow_client, run_id, "accuracy") == [(0, 1_000, 0.5), (0, 1_001, 0.7), (0, 1_002, 0.6)]
    # The latest value is MLflow's: the highest step, then the newest timestamp.
    assert mlflow_client.get_run(run_id).data.metrics == {"accuracy": 0.6}


def test_several_values_at_one_step_in_one_batch_are_all_kept_and_a_retry_stores_none_twice(mlflow_client):
    from mlflow.entities import Metric

    run_id = _run_id(mlflow_client)
    batch = [Metric("loss", 1.0, 5_000, 0), Metric("loss", 2.0, 5_000, 0), Metric("loss", 0.5, 6_000, 1)]
    mlflow_client.log_batch(run_id, metrics=batch)
    mlflow_client.log_batch(run_id, metrics=batch)  # the client sent it again (a retry)
    assert _history(mlflow_client, run_id, "loss") == [(0, 5_000, 1.0), (0, 5_000, 2.0), (1, 6_000, 0.5)]
    # The dashboard's series keeps one value per step: the first one sent.
    job = MLflowRun.objects.get(run_uuid=run_id).job
    assert list(MetricPoint.objects.filter(job=job).order_by("step").values_list("step", "value")) == [
        (0, 1.0),
        (1, 0.5),
    ]


def test_values_at_an_earlier_timestamp_are_returned_in_timestamp_order(mlflow_client):
    run_id = _run_id(mlflow_client)
    mlflow_client.log_metric(run_id, "lr", 0.2, timestamp=2_000, step=3)
    mlflow_client.log_metric(run_id, "lr", 0.1, timestamp=1_000, step=3)
    assert _history(mlflow_client, run_id, "lr") == [(3, 1_000, 0.1), (3, 2_000, 0.2)]
    assert mlflow_client.get_run(run_id).data.metrics == {"lr": 0.2}


def test_a_tracking_run_that_keeps_logging_is_never_reaped_nor_requeued(mlflow_client, client):
    from experiments.services import jobs_reap_lost

    run_id = _run_id(mlflow_client)
    job = MLflowRun.objects.get(run_uuid=run_id).job
    for step in range(3):
        mlflow_client.log_metric(run_id, "loss", 1.0 / (step + 1), step=step)
        # Long after any worker's heartbeat would have been missed.
        assert jobs_reap_lost(now=timezone.now() + timedelta(days=1 + step)) == []
    job.refresh_from_db()
    assert job.status == JobStatus.RUNNING and job.lost_count == 0 and job.attempt == 0
    mlflow_client.set_terminated(run_id)
    job.refresh_from_db()
    assert job.status == JobStatus.SUCCEEDED


def test_a_worker_fetching_a_spec_without_training_data_gets_a_4xx(mlflow_client, client):
    run_id = _run_id(mlflow_client)
    job = MLflowRun.objects.get(run_uuid=run_id).job
    token = job.issue_token()  # what a requeue of the tracking run used to hand a worker
    response = client.get(
        f"/api/v1/worker/jobs/{job.public_id}/spec", headers={"Authorization": f"Bearer {token}"}
    )
    assert 400 <= response.status_code < 500, response.content
    assert "no training data" in response.content.decode()
