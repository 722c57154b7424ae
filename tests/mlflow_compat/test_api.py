"""MLflow's REST endpoints in-process: experiments, runs, params, tags, batches (with MLflow's limits),
metric history, search filters; metrics land as the job's metric points (the live test uses `mlflow`)."""

from __future__ import annotations

import pytest

from experiments.models import MetricPoint, TrainingJob


def _run(ml, name="exp") -> tuple[str, str]:
    experiment_id = ml.post("experiments/create", {"name": name}).json()["experiment_id"]
    run = ml.post(
        "runs/create", {"experiment_id": experiment_id, "run_name": "r1", "start_time": 1000}
    ).json()["run"]
    return experiment_id, run["info"]["run_id"]


def test_experiments_create_get_by_name_search(ml):
    experiment_id = ml.post("experiments/create", {"name": "exp-a"}).json()["experiment_id"]
    assert ml.get("experiments/get", experiment_id=experiment_id).json()["experiment"]["name"] == "exp-a"
    assert (
        ml.get("experiments/get-by-name", experiment_name="exp-a").json()["experiment"]["experiment_id"]
        == experiment_id
    )
    missing = ml.get("experiments/get-by-name", experiment_name="nope")
    assert missing.status_code == 404 and missing.json()["error_code"] == "RESOURCE_DOES_NOT_EXIST"
    again = ml.post("experiments/create", {"name": "exp-a"})
    assert again.status_code == 400 and again.json()["error_code"] == "RESOURCE_ALREADY_EXISTS"
    found = ml.post("experiments/search", {"filter": "name LIKE 'exp-%'"}).json()["experiments"]
    assert [e["name"] for e in found] == ["exp-a"]


def test_run_logging_goes_through_ingest_and_back(ml):
    _, run_id = _run(ml)
    job = TrainingJob.objects.get(mlflow_run__run_uuid=run_id)
    assert job.status == "running"
    assert (
        ml.post(
            "runs/log-metric", {"run_id": run_id, "key": "loss", "value": 2.0, "step": 1, "timestamp": 5000}
        ).status_code
        == 200
    )
    ml.post("runs/log-batch", {"run_id": run_id, "metrics": [{"key": "loss", "value": 1.0, "step": 2, "timestamp": 6000}],
                               "params": [{"key": "lr", "value": "0.1"}], "tags": [{"key": "team", "value": "a"}]})  # fmt: skip
    ml.post("runs/log-parameter", {"run_id": run_id, "key": "epochs", "value": "3"})
    ml.post("runs/set-tag", {"run_id": run_id, "key": "team", "value": "b"})
    assert list(MetricPoint.objects.filter(job=job, key="loss").order_by("step").values_list("step", "value", "wall_time")) == [
        (1, 2.0, 5.0), (2, 1.0, 6.0)]  # fmt: skip
    run = ml.get("runs/get", run_id=run_id).json()["run"]
    assert {p["key"]: p["value"] for p in run["data"]["params"]} == {"lr": "0.1", "epochs": "3"}
    assert {t["key"]: t["value"] for t in run["data"]["tags"]}["team"] == "b"
    assert run["data"]["metrics"] == [{"key": "loss", "value": 1.0, "timestamp": 6000, "step": 2}]
    history = ml.get("metrics/get-history", run_id=run_id, metric_key="loss").json()["metrics"]
    assert [(m["step"], m["value"]) for m in history] == [(1, 2.0), (2, 1.0)]
    # params are immutable, as in MLflow
    changed = ml.post("runs/log-parameter", {"run_id": run_id, "key": "lr", "value": "0.2"})
    assert changed.status_code == 400 and changed.json()["error_code"] == "INVALID_PARAMETER_VALUE"
    # ending the run ends the job
    info = ml.post("runs/update", {"run_id": run_id, "status": "FINISHED", "end_time": 9000}).json()[
        "run_info"
    ]
    assert info["status"] == "FINISHED" and info["end_time"] == 9000
    job.refresh_from_db()
    assert job.status == "succeeded"


def test_log_batch_limits(ml):
    _, run_id = _run(ml)
    too_many = [{"key": "m", "value": 1.0, "step": i, "timestamp": 1} for i in range(1001)]
    response = ml.post("runs/log-batch", {"run_id": run_id, "metrics": too_many})
    assert response.status_code == 400 and "at most 1000 metrics" in response.json()["message"]
    params = [{"key": f"p{i}", "value": "1"} for i in range(101)]
    assert ml.post("runs/log-batch", {"run_id": run_id, "params": params}).status_code == 400
    assert not MetricPoint.objects.filter(job__mlflow_run__run_uuid=run_id).exists()


def test_runs_search_filters(ml):
    experiment_id, first = _run(ml)
    second = ml.post("runs/create", {"experiment_id": experiment_id, "run_name": "r2"}).json()["run"]["info"][
        "run_id"
    ]
    ml.post("runs/log-batch", {"run_id": first, "metrics": [{"key": "loss", "value": 0.3, "step": 1}],
                               "params": [{"key": "opt", "value": "adam"}]})  # fmt: skip
    ml.post("runs/log-batch", {"run_id": second, "metrics": [{"key": "loss", "value": 0.9, "step": 1}],
                               "params": [{"key": "opt", "value": "sgd"}]})  # fmt: skip

    def search(filter_string, **extra):
        body = {"experiment_ids": [experiment_id], "filter": filter_string, **extra}
        return [r["info"]["run_id"] for r in ml.post("runs/search", body).json().get("runs", [])]

    assert search("metrics.loss < 0.5") == [first]
    assert search("params.opt = 'sgd'") == [second]
    assert search("attributes.run_name = 'r1' AND metrics.loss <= 0.3") == [first]
    assert search("", order_by=["metrics.loss DESC"]) == [second, first]
    page = ml.post("runs/search", {"experiment_ids": [experiment_id], "max_results": 1}).json()
    assert len(page["runs"]) == 1 and page["next_page_token"] == "1"


def test_other_users_runs_are_not_found(ml, client, make_user):
    _, run_id = _run(ml)
    other = make_user("otto")
    response = client.get(
        "/api/2.0/mlflow/runs/get", {"run_id": run_id}, headers={"Authorization": f"Bearer {other.raw_token}"}
    )
    assert response.status_code == 404 and response.json()["error_code"] == "RESOURCE_DOES_NOT_EXIST"
    assert client.get("/api/2.0/mlflow/runs/get", {"run_id": run_id}).status_code == 401


@pytest.mark.parametrize(
    "filter_string",
    ["metrics.loss > 'abc'", "metrics.loss < 1e5e", "attributes.start_time > 'soon'", "metrics.loss LIKE '1%'",
     "attributes.nope = 'x'", "dataset.name = 'x'"],
)  # fmt: skip
def test_runs_search_refuses_a_bad_filter_with_mlflows_400(ml, filter_string):
    """Issue 17 item 12: `metrics.loss > 'abc'` was a 500. MLflow answers INVALID_PARAMETER_VALUE, with
    runs to compare against or without."""
    experiment_id, run_id = _run(ml)
    for with_runs in (True, False):
        if not with_runs:
            experiment_id = ml.post("experiments/create", {"name": "empty"}).json()["experiment_id"]
        else:
            ml.post("runs/log-metric", {"run_id": run_id, "key": "loss", "value": 0.5, "step": 1})
        response = ml.post("runs/search", {"experiment_ids": [experiment_id], "filter": filter_string})
        assert response.status_code == 400, response.content
        assert response.json()["error_code"] == "INVALID_PARAMETER_VALUE"
        assert response.json()["message"]
