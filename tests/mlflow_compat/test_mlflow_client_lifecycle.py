"""The real `mlflow` client's everyday calls beyond logging, against a live server: deleting and
restoring runs and experiments, renaming experiments, experiment tags, deleting run tags, ordering
and filtering searches, long param values. Each answer is the one MLflow's own server gives
(mlflow/server/handlers.py, mlflow/store/tracking/sqlalchemy_store.py, mlflow/utils/search_utils.py)."""

from __future__ import annotations

import pytest

pytestmark = pytest.mark.django_db(transaction=True)


def _error_code(call) -> str:
    from mlflow.exceptions import MlflowException

    with pytest.raises(MlflowException) as caught:
        call()
    return caught.value.error_code


def test_a_deleted_run_leaves_searches_refuses_logging_and_comes_back_when_restored(tracking):
    from mlflow.entities import ViewType

    mlflow = tracking
    client = mlflow.MlflowClient()
    experiment_id = client.create_experiment("deleting runs")
    kept = client.create_run(experiment_id, run_name="kept").info.run_id
    gone = client.create_run(experiment_id, run_name="gone").info.run_id

    client.delete_run(gone)

    assert client.get_run(gone).info.lifecycle_stage == "deleted"
    assert [r.info.run_id for r in client.search_runs([experiment_id])] == [kept]
    deleted = client.search_runs([experiment_id], run_view_type=ViewType.DELETED_ONLY)
    assert [r.info.run_id for r in deleted] == [gone]
    assert {r.info.run_id for r in client.search_runs([experiment_id], run_view_type=ViewType.ALL)} == {
        kept,
        gone,
    }
    assert _error_code(lambda: client.log_param(gone, "lr", "0.1")) == "INVALID_PARAMETER_VALUE"
    assert _error_code(lambda: client.set_terminated(gone, "FAILED")) == "INVALID_PARAMETER_VALUE"

    client.restore_run(gone)

    client.log_metric(gone, "loss", 0.5, step=1)
    assert client.get_run(gone).info.lifecycle_stage == "active"
    assert client.get_run(gone).data.metrics == {"loss": 0.5}
    assert {r.info.run_id for r in client.search_runs([experiment_id])} == {kept, gone}


def test_delete_tag_removes_a_run_tag_and_a_missing_one_is_not_found(tracking):
    mlflow = tracking
    mlflow.set_experiment("tags")
    with mlflow.start_run() as run:
        mlflow.set_tags({"team": "nlp", "stage": "draft"})
        client = mlflow.MlflowClient()
        client.delete_tag(run.info.run_id, "stage")
        tags = client.get_run(run.info.run_id).data.tags
        assert tags["team"] == "nlp" and "stage" not in tags
        assert _error_code(lambda: client.delete_tag(run.info.run_id, "stage")) == "RESOURCE_DOES_NOT_EXIST"


def test_a_deleted_experiment_takes_its_runs_along_and_a_restore_brings_both_back(tracking):
    from mlflow.entities import ViewType
    from mlflow.exceptions import MlflowException

    mlflow = tracking
    client = mlflow.MlflowClient()
    experiment = mlflow.set_experiment("to delete")
    with mlflow.start_run() as run:
        mlflow.log_param("lr", "0.1")
    other_id = client.create_experiment("stays")

    client.delete_experiment(experiment.experiment_id)

    assert client.get_experiment(experiment.experiment_id).lifecycle_stage == "deleted"
    assert client.get_run(run.info.run_id).info.lifecycle_stage == "deleted"
    listed = [e.experiment_id for e in client.search_experiments()]
    assert experiment.experiment_id not in listed and other_id in listed
    deleted = client.search_experiments(view_type=ViewType.DELETED_ONLY)
    assert [e.experiment_id for e in deleted] == [experiment.experiment_id]
    with pytest.raises(MlflowException, match="Cannot set a deleted experiment"):
        mlflow.set_experiment("to delete")
    refused = _error_code(lambda: client.create_run(experiment.experiment_id))
    assert refused == "INVALID_PARAMETER_VALUE"
    assert (
        _error_code(lambda: client.delete_experiment(experiment.experiment_id)) == "RESOURCE_DOES_NOT_EXIST"
    )

    client.restore_experiment(experiment.experiment_id)

    assert client.get_experiment(experiment.experiment_id).lifecycle_stage == "active"
    assert client.get_run(run.info.run_id).info.lifecycle_stage == "active"
    assert mlflow.set_experiment("to delete").experiment_id == experiment.experiment_id


def test_rename_experiment_and_experiment_tags(tracking):
    mlflow = tracking
    client = mlflow.MlflowClient()
    experiment_id = client.create_experiment("old name", tags={"owner": "rita"})
    client.create_experiment("taken")

    client.rename_experiment(experiment_id, "new name")
    assert client.get_experiment_by_name("new name").experiment_id == experiment_id
    assert client.get_experiment_by_name("old name") is None
    assert _error_code(lambda: client.rename_experiment(experiment_id, "taken")) == "RESOURCE_ALREADY_EXISTS"

    client.set_experiment_tag(experiment_id, "purpose", "baseline")
    tags = client.get_experiment(experiment_id).tags
    assert tags["owner"] == "rita" and tags["purpose"] == "baseline"
    client.delete_experiment_tag(experiment_id, "owner")
    assert "owner" not in client.get_experiment(experiment_id).tags
    found = client.search_experiments(filter_string="tags.purpose = 'baseline'")
    assert [e.experiment_id for e in found] == [experiment_id]


def test_set_experiment_with_a_name_t4dm_would_strip_finds_the_same_experiment_again(tracking):
    mlflow = tracking
    first = mlflow.set_experiment("padded ")
    assert mlflow.set_experiment("padded ").experiment_id == first.experiment_id
    assert first.name == "padded "


def test_search_runs_orders_by_params_and_tags_and_puts_runs_without_the_value_last(tracking):
    mlflow = tracking
    client = mlflow.MlflowClient()
    experiment_id = client.create_experiment("ordering")
    runs = {}
    for name, lr, loss in (("a", "0.3", 0.9), ("b", "0.1", None), ("c", None, 0.2), ("d", "0.2", 0.5)):
        run_id = client.create_run(experiment_id, run_name=name, start_time=1_000).info.run_id
        runs[run_id] = name
        if lr is not None:
            client.log_param(run_id, "lr", lr)
            client.set_tag(run_id, "lr_tag", lr)
        if loss is not None:
            client.log_metric(run_id, "loss", loss)

    def order(*order_by):
        return [runs[r.info.run_id] for r in client.search_runs([experiment_id], order_by=list(order_by))]

    assert order("params.lr DESC") == ["a", "d", "b", "c"]
    assert order("params.lr") == ["b", "d", "a", "c"]
    assert order("tags.`lr_tag` ASC") == ["b", "d", "a", "c"]
    # a run without the metric comes last in both directions, as in MLflow
    assert order("metrics.loss DESC") == ["a", "d", "c", "b"]
    assert order("metrics.loss ASC") == ["c", "d", "a", "b"]
    assert order("attributes.run_name DESC") == ["d", "c", "b", "a"]
    assert _error_code(lambda: order("params.lr SIDEWAYS")) == "INVALID_PARAMETER_VALUE"
    assert _error_code(lambda: order("nonsense.lr")) == "INVALID_PARAMETER_VALUE"


def test_search_runs_filter_with_and_inside_a_quoted_value(tracking):
    mlflow = tracking
    client = mlflow.MlflowClient()
    experiment_id = client.create_experiment("and inside")
    run_id = client.create_run(experiment_id).info.run_id
    client.set_tag(run_id, "note", "this AND that")
    found = client.search_runs([experiment_id], filter_string="tags.note = 'this AND that'")
    assert [r.info.run_id for r in found] == [run_id]


def test_a_long_param_value_is_kept_to_mlflows_length_as_mlflow_does(tracking):
    mlflow = tracking
    mlflow.set_experiment("long values")
    prompt = "p" * 7_000
    with mlflow.start_run() as run:
        mlflow.log_param("prompt", prompt)
        mlflow.log_param("prompt", prompt)  # the same value again: accepted
        mlflow.set_tag("description", "d" * 9_000)
    data = mlflow.MlflowClient().get_run(run.info.run_id).data
    assert data.params["prompt"] == prompt[:6_000]
    assert data.tags["description"] == "d" * 8_000


def test_search_experiments_lists_the_newest_first_as_mlflow_does(tracking):
    mlflow = tracking
    client = mlflow.MlflowClient()
    ids = [client.create_experiment(name) for name in ("first", "second", "third")]
    listed = [e.experiment_id for e in client.search_experiments() if e.experiment_id in ids]
    assert listed == ids[::-1]
    assert [e.name for e in client.search_experiments(order_by=["name ASC"], max_results=2)] == [
        "first",
        "second",
    ]


def test_log_inputs_records_the_runs_datasets_once_each(tracking):
    from mlflow.entities import Dataset, DatasetInput, InputTag

    mlflow = tracking
    client = mlflow.MlflowClient()
    run_id = client.create_run(client.create_experiment("inputs")).info.run_id
    dataset = Dataset(name="chat-v2", digest="abc123", source_type="local", source='{"uri": "/data/chat"}')
    train = DatasetInput(dataset, tags=[InputTag("mlflow.data.context", "train")])
    client.log_inputs(run_id, datasets=[train])
    client.log_inputs(run_id, datasets=[train])  # the same dataset again: kept once, as in MLflow

    inputs = client.get_run(run_id).inputs.dataset_inputs
    assert [(i.dataset.name, i.dataset.digest, i.dataset.source) for i in inputs] == [
        ("chat-v2", "abc123", '{"uri": "/data/chat"}')
    ]
    assert [(t.key, t.value) for t in inputs[0].tags] == [("mlflow.data.context", "train")]


def test_logging_an_artifact_fails_instead_of_landing_in_the_clients_working_directory(
    tracking, tmp_path, monkeypatch
):
    """T4DM stores no MLflow artifacts. With an empty artifact URI the client copied
    `log_text(..., "plots/a.txt")` to ./plots/a.txt and reported success."""
    import requests
    from mlflow.exceptions import MlflowException

    mlflow = tracking
    monkeypatch.chdir(tmp_path)
    mlflow.set_experiment("artifacts")
    with mlflow.start_run() as run:
        assert mlflow.get_artifact_uri().startswith("mlflow-artifacts:/")
        with pytest.raises(
            (MlflowException, requests.HTTPError)
        ):  # the server's 404, as the client raises it
            mlflow.log_text("hello", "plots/a.txt")
    assert run.info.artifact_uri.endswith(f"/{run.info.run_id}/artifacts")
    assert list(tmp_path.iterdir()) == []


def test_search_runs_takes_mlflows_in_is_null_and_user_id_filters(tracking):
    mlflow = tracking
    client = mlflow.MlflowClient()
    experiment_id = client.create_experiment("filters")
    names = {client.create_run(experiment_id, run_name=n).info.run_id: n for n in ("a", "b", "c")}
    ids = {n: run_id for run_id, n in names.items()}
    client.set_tag(ids["a"], "reviewed", "yes")

    def found(filter_string):
        return {
            names[r.info.run_id] for r in client.search_runs([experiment_id], filter_string=filter_string)
        }

    assert found(f"attributes.run_id IN ('{ids['a']}', '{ids['b']}')") == {"a", "b"}
    assert found(f"run_id NOT IN ('{ids['a']}') AND tags.reviewed IS NULL") == {"b", "c"}
    assert found("tags.reviewed IS NOT NULL") == {"a"}
    assert found("attributes.user_id = 'rita'") == {"a", "b", "c"}
    assert found("attributes.created > 0 AND attributes.`Run name` = 'c'") == {"c"}
    assert _error_code(lambda: found("params.lr IN ('1')")) == "INVALID_PARAMETER_VALUE"
    assert _error_code(lambda: found("metrics.loss IS NULL")) == "INVALID_PARAMETER_VALUE"
