"""The MLflow-compatible API's cost does not grow with what is stored or sent: runs/get and runs/search
take each key's latest value in one query that reads no series, whatever the number of points; a
log-batch of 1,000 metrics takes as many queries as one of 2. Bad bodies are MLflow's 400 and store
nothing. The run's name is the job's display name, both ways."""

from __future__ import annotations

import json
import os

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from experiments.ingest import PointIn, metric_points_ingest
from experiments.mlflow_compat.models import MetricValueExtra, MLflowRun
from experiments.models import MetricPoint, TrainingJob

pytestmark = pytest.mark.django_db

POINTS = f'"{MetricPoint._meta.db_table}"'


def _job(run_id: str) -> TrainingJob:
    return MLflowRun.objects.select_related("job").get(run_uuid=run_id).job


def _store(run_id: str, steps: int) -> None:
    """`steps` steps of loss and lr (2 points each), the last at value 0.5 and wall time 7,000 s."""
    job = _job(run_id)
    points = [
        PointIn(key, s, 1.0 + s, wall_time=1_000 + s) for s in range(steps - 1) for key in ("loss", "lr")
    ]
    points += [PointIn(key, steps - 1, 0.5, wall_time=7_000) for key in ("loss", "lr")]
    for begin in range(0, len(points), 5_000):
        metric_points_ingest(job=job, points=points[begin : begin + 5_000])


def _point_reads(queries) -> list[str]:
    return [q["sql"] for q in queries if f"FROM {POINTS}" in q["sql"]]


def _reads_only_last_steps(sql: str) -> bool:
    """A query on the point table that picks each series' row by `step = (one backward index step)`:
    every WHERE on the table names a (job, key) and its step through a LIMIT 1 subquery."""
    return f'{POINTS}."step" = (SELECT' in sql and "LIMIT 1" in sql and "GROUP BY" not in sql


def test_runs_get_reads_latest_values_in_one_query_whatever_the_number_of_points(ml):
    experiment_id = ml.experiment("reads")
    short, long = ml.run(experiment_id), ml.run(experiment_id)
    _store(short, 10)
    _store(long, 10_000)  # 20,000 points
    counts = {}
    for run_id in (short, long):
        with CaptureQueriesContext(connection) as seen:
            response = ml.get("runs/get", run_id=run_id)
        assert response.status_code == 200, response.content
        latest = {"value": 0.5, "timestamp": 7_000_000}
        steps = 9 if run_id == short else 9_999
        metrics = response.json()["run"]["data"]["metrics"]
        assert metrics == [{"key": "loss", **latest, "step": steps}, {"key": "lr", **latest, "step": steps}]
        counts[run_id] = len(seen.captured_queries)
        reads = _point_reads(seen.captured_queries)
        assert len(reads) == 1 and _reads_only_last_steps(reads[0]), reads
    # token, roles, the run with its job, the latest values: the same for 20 points as for 20,000.
    assert counts[short] == counts[long] <= 4


def test_runs_search_takes_one_query_for_the_latest_values_of_all_runs(ml):
    experiment_id = ml.experiment("search")
    runs = [ml.run(experiment_id) for _ in range(3)]
    _store(runs[0], 5)
    with CaptureQueriesContext(connection) as few:
        assert len(ml.post("runs/search", {"experiment_ids": [experiment_id]}).json()["runs"]) == 3
    for run_id in runs:
        _store(run_id, 3_000)
    runs.append(ml.run(experiment_id))
    with CaptureQueriesContext(connection) as many:
        found = ml.post(
            "runs/search", {"experiment_ids": [experiment_id], "filter": "metrics.loss < 1"}
        ).json()["runs"]
    assert sorted(r["info"]["run_id"] for r in found) == sorted(runs[:3])
    assert all(r["data"]["metrics"][0]["step"] == 2_999 for r in found)
    assert len(few.captured_queries) == len(many.captured_queries) <= 5
    reads = _point_reads(many.captured_queries)
    assert len(reads) == 1 and _reads_only_last_steps(reads[0]), reads


def test_the_latest_value_counts_extra_values_at_the_last_step(ml):
    """Several values at the last step: MLflow's pick is the newest timestamp, then the highest value."""
    run_id = ml.run(ml.experiment("extras"))
    metrics = [
        {"key": "loss", "value": 3.0, "step": 1, "timestamp": 10},
        {"key": "loss", "value": 2.0, "step": 2, "timestamp": 20},
        {"key": "loss", "value": 1.0, "step": 2, "timestamp": 30},
        {"key": "loss", "value": 4.0, "step": 2, "timestamp": 30},
        {"key": "loss", "value": 0.5, "step": 2, "timestamp": 25},
    ]
    assert ml.post("runs/log-batch", {"run_id": run_id, "metrics": metrics}).status_code == 200
    got = ml.get("runs/get", run_id=run_id).json()["run"]["data"]["metrics"]
    assert got == [{"key": "loss", "value": 4.0, "timestamp": 30, "step": 2}]
    history = ml.get("metrics/get-history", run_id=run_id, metric_key="loss").json()["metrics"]
    assert [(m["step"], m["timestamp"], m["value"]) for m in history] == [
        (1, 10, 3.0), (2, 20, 2.0), (2, 25, 0.5), (2, 30, 1.0), (2, 30, 4.0),
    ]  # fmt: skip


def _batch(run_id: str, first_step: int, steps: int) -> dict:
    metrics = [
        {"key": key, "value": 1.0 / (s + 1), "step": s, "timestamp": 1_000 + s}
        for s in range(first_step, first_step + steps)
        for key in ("loss", "lr")
    ]
    return {"run_id": run_id, "metrics": metrics}


def test_a_1000_metric_log_batch_takes_as_many_queries_as_a_one_step_one(ml):
    run_id = ml.run(ml.experiment("cost"))
    assert ml.post("runs/log-batch", _batch(run_id, 0, 1)).status_code == 200  # the token's "last used"
    with CaptureQueriesContext(connection) as one_step:
        assert ml.post("runs/log-batch", _batch(run_id, 1, 1)).status_code == 200
    with CaptureQueriesContext(connection) as thousand:
        assert ml.post("runs/log-batch", _batch(run_id, 2, 500)).status_code == 200

    # The embedded SQLite's ORM ingest splits a bulk insert by SQLite's bound-parameter limit; on
    # PostgreSQL a batch is one statement. Every other query is the same for 2 metrics as for 1,000.
    def rest(seen):
        return [q["sql"] for q in seen.captured_queries if not q["sql"].startswith(f"INSERT INTO {POINTS}")]

    assert len(rest(one_step)) == len(rest(thousand))
    # One transaction: the ingest's own (a savepoint here, inside the test's transaction), not one
    # inside another.
    assert sum(q.startswith("SAVEPOINT") for q in rest(thousand)) == 1
    assert MetricPoint.objects.filter(job=_job(run_id)).count() == 2 * 502
    assert not MetricValueExtra.objects.exists()


@pytest.mark.parametrize(
    "body",
    [
        "not json",
        {"metrics": [{"key": "loss", "value": 1.0, "step": 1}]},  # no run_id
        {"run_id": "RUN", "metrics": [{"key": "loss", "value": "abc", "step": 1}]},
        {"run_id": "RUN", "metrics": [{"key": "loss", "value": None, "step": 1}]},
        {"run_id": "RUN", "metrics": [{"key": "loss", "value": 1.0, "step": 1.5}]},
        {"run_id": "RUN", "metrics": [{"key": "loss", "value": 1.0}, {"key": "bad key!", "value": 1.0}]},
        {"run_id": "RUN", "metrics": [{"key": "loss", "value": 1.0, "step": -1}]},
        {"run_id": "RUN", "metrics": [{"value": 1.0, "step": 1}]},
        {"run_id": "RUN", "metrics": [{"key": "x" * 251, "value": 1.0, "step": 1}]},
    ],
)
def test_a_bad_log_batch_is_mlflows_400_and_stores_nothing(ml, body):
    run_id = ml.run(ml.experiment("bad"))
    response = ml.post("runs/log-batch", json.dumps(body).replace('"RUN"', json.dumps(run_id)))
    assert response.status_code == 400, response.content
    assert response.json()["error_code"] == "INVALID_PARAMETER_VALUE"
    assert response.json()["message"]
    assert not MetricPoint.objects.exists()


def test_nan_is_refused_by_log_metric_and_log_batch(ml):
    run_id = ml.run(ml.experiment("nan"))
    for path, body in (
        (
            "runs/log-metric",
            '{"run_id": "RUN", "key": "loss", "value": NaN, "step": 0}'.replace("RUN", run_id),
        ),
        (
            "runs/log-batch",
            '{"run_id": "RUN", "metrics": [{"key": "loss", "value": NaN}]}'.replace("RUN", run_id),
        ),
        ("runs/log-metric", {"run_id": run_id, "key": "loss", "value": "Infinity"}),
    ):
        response = ml.post(path, body)
        assert response.status_code == 400 and "finite" in response.json()["message"], response.content
    assert ml.post("runs/log-metric", {"run_id": run_id, "key": "loss", "value": "0.5"}).status_code == 200
    assert MetricPoint.objects.get().value == 0.5


# --- the run's name is the job's display name --------------------------------------------------------


def test_run_name_in_runs_create_and_the_run_name_tag_name_the_job(ml):
    experiment_id = ml.experiment("names")
    by_field = ml.run(experiment_id, run_name="lr sweep  a")
    by_tag = ml.run(experiment_id, tags=[{"key": "mlflow.runName", "value": "tagged"}])
    unnamed = ml.run(experiment_id)
    assert _job(by_field).name == "lr sweep a"  # whitespace collapsed, as the runs table's rename does
    assert _job(by_tag).name == "tagged"
    assert _job(unnamed).name == ""  # shown by its id in the runs table
    assert ml.get("runs/get", run_id=unnamed).json()["run"]["info"]["run_name"] == _job(unnamed).public_id


def test_runs_update_and_set_tag_rename_the_job_and_a_job_rename_shows_in_mlflow(ml, client, researcher):
    run_id = ml.run(ml.experiment("rename"), run_name="first")
    assert ml.post("runs/update", {"run_id": run_id, "run_name": "second"}).status_code == 200
    assert _job(run_id).name == "second"
    assert (
        ml.post("runs/set-tag", {"run_id": run_id, "key": "mlflow.runName", "value": "third"}).status_code
        == 200
    )
    assert _job(run_id).name == "third"
    response = client.patch(
        f"/api/v1/jobs/{_job(run_id).public_id}",
        json.dumps({"name": "fourth"}),
        content_type="application/json",
        headers={"Authorization": f"Bearer {researcher.raw_token}"},
    )
    assert response.status_code == 200, response.content
    run = ml.get("runs/get", run_id=run_id).json()["run"]
    assert run["info"]["run_name"] == "fourth"
    assert {"key": "mlflow.runName", "value": "fourth"} in run["data"]["tags"]
    found = ml.post(
        "runs/search",
        {"experiment_ids": [run["info"]["experiment_id"]], "filter": "attributes.run_name = 'fourth'"},
    ).json()["runs"]
    assert [r["info"]["run_id"] for r in found] == [run_id]


def test_a_run_name_longer_than_mlflows_column_is_a_400(ml):
    response = ml.post("runs/create", {"experiment_id": ml.experiment("long"), "run_name": "x" * 251})
    assert response.status_code == 400 and response.json()["error_code"] == "INVALID_PARAMETER_VALUE"
    assert not TrainingJob.objects.exists()


@pytest.mark.production
def test_the_same_holds_on_postgresql():
    """The latest-value query and the text body the ingest statement parses, on production's database."""
    if os.environ.get("T4DM_EXPECT_DB_VENDOR") == "postgresql":
        pytest.skip("this is the rerun")
    from tests.rerun import rerun_on_postgresql

    done, summary = rerun_on_postgresql(
        "tests/mlflow_compat/test_reads_and_request_cost.py",
        "-m",
        "not production",
        db_prefix="t4dm_mlflow_cost",
    )
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-2000:]
    assert " passed" in summary and "failed" not in summary, summary
