"""Hostile and odd input to the MLflow API, in-process: ids and page tokens that are not this API's
are MLflow's 4xx (never a 500), and another user's runs and experiments are 404 for every operation
that names them, with nothing changed."""

from __future__ import annotations

import pytest

from experiments.mlflow_compat.models import MLflowRun
from experiments.models import Experiment, MetricPoint
from tests.mlflow_compat.conftest import mlflow_caller


def _run(ml, name="exp") -> tuple[str, str]:
    experiment_id = ml.post("experiments/create", {"name": name}).json()["experiment_id"]
    run = ml.post("runs/create", {"experiment_id": experiment_id, "run_name": "r1"}).json()["run"]
    return experiment_id, run["info"]["run_id"]


@pytest.mark.parametrize("experiment_id", ["²", "1²", "9" * 30, "-1", " 1", "１"])
def test_an_experiment_id_that_is_not_one_is_not_found(ml, experiment_id):
    response = ml.get("experiments/get", experiment_id=experiment_id)
    assert response.status_code == 404, response.content
    assert response.json()["error_code"] == "RESOURCE_DOES_NOT_EXIST"
    search = ml.post("runs/search", {"experiment_ids": [experiment_id]})
    assert search.status_code == 404, search.content


@pytest.mark.parametrize("token", ["²", "abc", "9" * 30, "-1"])
def test_a_page_token_this_api_did_not_give_is_mlflows_400(ml, token):
    experiment_id, run_id = _run(ml)
    for response in (
        ml.post("runs/search", {"experiment_ids": [experiment_id], "page_token": token}),
        ml.post("experiments/search", {"page_token": token}),
        ml.get("metrics/get-history", run_id=run_id, metric_key="loss", page_token=token),
    ):
        assert response.status_code == 400, response.content
        assert response.json()["error_code"] == "INVALID_PARAMETER_VALUE"


def test_another_users_run_and_experiment_are_not_found_and_stay_as_they_were(ml, client, make_user):
    experiment_id, run_id = _run(ml)
    ml.post("runs/set-tag", {"run_id": run_id, "key": "team", "value": "nlp"})
    ml.post("experiments/set-experiment-tag", {"experiment_id": experiment_id, "key": "k", "value": "v"})
    other = mlflow_caller(client, make_user("otto"))
    evaluator = mlflow_caller(client, make_user("eve", role="evaluator"))  # no trainer role
    for path, body in (
        ("runs/delete", {"run_id": run_id}),
        ("runs/restore", {"run_id": run_id}),
        ("runs/delete-tag", {"run_id": run_id, "key": "team"}),
        ("runs/log-inputs", {"run_id": run_id, "datasets": []}),
        ("experiments/delete", {"experiment_id": experiment_id}),
        ("experiments/restore", {"experiment_id": experiment_id}),
        ("experiments/update", {"experiment_id": experiment_id, "new_name": "mine now"}),
        ("experiments/set-experiment-tag", {"experiment_id": experiment_id, "key": "k", "value": "x"}),
        ("experiments/delete-experiment-tag", {"experiment_id": experiment_id, "key": "k"}),
    ):
        response = other.post(path, body)
        assert response.status_code == 404, (path, response.content)
        assert response.json()["error_code"] == "RESOURCE_DOES_NOT_EXIST"
        assert (
            client.post(f"/api/2.0/mlflow/{path}", body, content_type="application/json").status_code == 401
        )
        assert evaluator.post(path, body).status_code == 403
    run = MLflowRun.objects.get(run_uuid=run_id)
    assert run.lifecycle_stage == "active" and run.tags["team"] == "nlp"
    experiment = ml.get("experiments/get", experiment_id=experiment_id).json()["experiment"]
    assert experiment["name"] == "exp" and experiment["lifecycle_stage"] == "active"
    assert {"key": "k", "value": "v"} in experiment["tags"]


def test_an_admins_set_experiment_finds_the_admins_own_experiment_not_a_users(ml, client, make_user):
    """An admin sees every user's experiments; `mlflow.set_experiment("exp")` (get-by-name) must still
    answer the admin's own "exp", not a researcher's older one (the admin's runs would land in it)."""
    theirs, _ = _run(ml, "exp")
    admin = mlflow_caller(client, make_user("ada", role="admin"))
    mine = admin.post("experiments/create", {"name": "exp"}).json()["experiment_id"]
    found = admin.get("experiments/get-by-name", experiment_name="exp").json()["experiment"]
    assert found["experiment_id"] == mine != theirs


def test_an_experiment_name_longer_than_t4dm_keeps_is_mlflows_400_not_a_database_error(ml):
    response = ml.post("experiments/create", {"name": "x" * 201})
    assert response.status_code == 400 and response.json()["error_code"] == "INVALID_PARAMETER_VALUE"
    assert not Experiment.objects.filter(name__startswith="xxx").exists()


def test_times_beyond_a_64_bit_integer_are_mlflows_400_not_a_500(ml):
    experiment_id, run_id = _run(ml)
    huge = 10**20
    answers = {
        "start_time": ml.post("runs/create", {"experiment_id": experiment_id, "start_time": huge}),
        "end_time": ml.post("runs/update", {"run_id": run_id, "status": "FINISHED", "end_time": huge}),
        "timestamp": ml.post(
            "runs/log-batch",
            {
                "run_id": run_id,
                "metrics": [{"key": "m", "value": v, "step": 3, "timestamp": huge} for v in (1, 2)],
            },
        ),
    }
    for what, response in answers.items():
        assert response.status_code == 400, (what, response.content)
        assert response.json()["error_code"] == "INVALID_PARAMETER_VALUE"
    assert not MetricPoint.objects.filter(job__mlflow_run__run_uuid=run_id).exists()
    assert ml.get("runs/get", run_id=run_id).json()["run"]["info"]["status"] == "RUNNING"


def test_a_body_over_djangos_limit_is_mlflows_400_not_a_500(ml, settings):
    """A 500 made the mlflow client retry the request for minutes before failing."""
    _, run_id = _run(ml)
    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = 100_000
    response = ml.post("runs/set-tag", {"run_id": run_id, "key": "config", "value": "x" * 200_000})
    assert response.status_code == 400, response.content
    assert response.json()["error_code"] == "INVALID_PARAMETER_VALUE"
    batch = ml.post("runs/log-batch", {"run_id": run_id, "tags": [{"key": "t", "value": "x" * 200_000}]})
    assert batch.status_code == 400, batch.content


def test_a_batch_naming_one_param_twice_is_mlflows_400_and_stores_nothing(ml):
    """MLflow refuses it even when both values are the same (_validate_param_keys_unique)."""
    _, run_id = _run(ml)
    params = [{"key": "lr", "value": "0.1"}, {"key": "lr", "value": "0.1"}]
    metrics = [{"key": "loss", "value": 1.0, "step": 1}]
    response = ml.post("runs/log-batch", {"run_id": run_id, "params": params, "metrics": metrics})
    assert response.status_code == 400 and response.json()["error_code"] == "INVALID_PARAMETER_VALUE"
    assert "Duplicate parameter keys" in response.json()["message"]
    assert MLflowRun.objects.get(run_uuid=run_id).params == {}
    assert not MetricPoint.objects.filter(job__mlflow_run__run_uuid=run_id).exists()
