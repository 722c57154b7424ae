"""MLflow-compatible reads that do not grow with the series: runs/get takes latest values from the
rollups, get-history pages by step through the index."""

from __future__ import annotations

import json

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from experiments.ingest import PointIn, metric_points_ingest
from experiments.mlflow_compat.models import MLflowRun
from experiments.models import MetricPoint

pytestmark = pytest.mark.django_db


@pytest.fixture
def ml(client, researcher):
    headers = {"Authorization": f"Bearer {researcher.raw_token}"}

    class ML:
        def get(self, path, **params):
            return client.get(f"/api/2.0/mlflow/{path}", params, headers=headers)

        def post(self, path, data):
            return client.post(
                f"/api/2.0/mlflow/{path}", json.dumps(data), content_type="application/json", headers=headers
            )

    return ML()


def _run_with(ml, experiment_id: str, steps: int) -> str:
    run_id = ml.post("runs/create", {"experiment_id": experiment_id})
    run_id = run_id.json()["run"]["info"]["run_id"]
    job = MLflowRun.objects.get(run_uuid=run_id).job
    points = [PointIn(key, s, float(s), wall_time=1_000 + s) for s in range(steps) for key in ("loss", "lr")]
    for begin in range(0, len(points), 5000):
        metric_points_ingest(job=job, points=points[begin : begin + 5000])
    return run_id


def _whole_series_reads(queries) -> list[str]:
    """Queries on the metric point table that do not pick their rows by step."""
    table = f'"{MetricPoint._meta.db_table}"'
    out = []
    for query in queries:
        sql = query["sql"]
        if f"FROM {table}" in sql:
            where = sql.partition(" WHERE ")[2].partition(" ORDER BY ")[0]
            if f'{table}."step" =' not in where:
                out.append(sql)
    return out


def test_runs_get_and_search_read_latest_values_without_reading_the_series(ml):
    experiment_id = ml.post("experiments/create", {"name": "reads"}).json()["experiment_id"]
    run_id = _run_with(ml, experiment_id, 3_000)
    with CaptureQueriesContext(connection) as queries:
        metrics = ml.get("runs/get", run_id=run_id).json()["run"]["data"]["metrics"]
        found = ml.post("runs/search", {"experiment_ids": [experiment_id]}).json()["runs"]
    latest = {"value": 2_999.0, "timestamp": 3_999_000, "step": 2_999}
    assert metrics == [{"key": "loss", **latest}, {"key": "lr", **latest}]
    assert found[0]["data"]["metrics"] == metrics
    assert _whole_series_reads(queries) == []


def test_get_history_pages_by_step_and_returns_everything_without_max_results(ml):
    experiment_id = ml.post("experiments/create", {"name": "history"}).json()["experiment_id"]
    run_id = _run_with(ml, experiment_id, 30_000)
    everything = ml.get("metrics/get-history", run_id=run_id, metric_key="loss").json()
    assert len(everything["metrics"]) == 30_000 and "next_page_token" not in everything
    steps, token = [], ""
    while True:
        page = ml.get(
            "metrics/get-history", run_id=run_id, metric_key="loss", max_results=7_000, page_token=token
        )
        body = page.json()
        steps += [m["step"] for m in body["metrics"]]
        token = body.get("next_page_token", "")
        if not token:
            break
    assert steps == list(range(30_000))
    bad = ml.get("metrics/get-history", run_id=run_id, metric_key="loss", page_token="abc")
    assert bad.status_code == 400 and bad.json()["error_code"] == "INVALID_PARAMETER_VALUE"


def test_runs_get_with_more_keys_than_one_query_can_name(ml):
    experiment_id = ml.post("experiments/create", {"name": "wide"}).json()["experiment_id"]
    run_id = ml.post("runs/create", {"experiment_id": experiment_id}).json()["run"]["info"]["run_id"]
    for begin in (0, 1000):
        metrics = [
            {"key": f"m{i}", "value": i, "timestamp": 5, "step": 1} for i in range(begin, begin + 1000)
        ]
        assert ml.post("runs/log-batch", {"run_id": run_id, "metrics": metrics}).status_code == 200
    got = ml.get("runs/get", run_id=run_id).json()["run"]["data"]["metrics"]
    assert sorted(m["value"] for m in got) == list(range(2000))
