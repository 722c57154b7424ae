"""Configs are checked at POST /configs by the same training spec the engine reads (issue 18 item 2):
a value the engine would refuse on the worker is refused when the config is made, naming the field."""

from __future__ import annotations

import pytest

from datasets_app.services import dataset_prepare
from experiments.models import TrainingConfig
from experiments.services import job_spec_for_worker, job_start
from experiments.training.spec import TrainingSpec
from tests.conftest import DEMO_ROWS


@pytest.fixture
def dataset_id(researcher, artifact_root) -> str:
    return dataset_prepare(
        owner=researcher, name="demo", content=DEMO_ROWS.read_bytes(), task_type="chat"
    ).dataset.public_id


def _config(api, user, dataset_id, **fields):
    return api.post(user, "/configs", {"model_base": "t4dm-tiny", "dataset_id": dataset_id, **fields})


@pytest.mark.parametrize(
    ("hyperparams", "field"),
    [
        ({"packing": "yes"}, "hyperparameters.packing"),
        ({"gradient_checkpointing": "no"}, "hyperparameters.gradient_checkpointing"),
        ({"logging_steps": 0}, "hyperparameters.logging_steps"),
        ({"seed": -1}, "hyperparameters.seed"),
        ({"micro_batch_tokens": 16}, "hyperparameters.micro_batch_tokens"),
        ({"max_seq_length": 100000}, "hyperparameters.max_seq_length"),  # t4dm-tiny holds 512 positions
        ({"compile": 1}, "hyperparameters.compile"),
        ({"warmup_ratio": 1.5}, "hyperparameters.warmup_ratio"),
        ({"max_steps": 0}, "hyperparameters.max_steps"),
        ({"learning_rate": 0}, "hyperparameters.learning_rate"),
        ({"no_such_knob": 1}, "hyperparameters.no_such_knob"),
    ],
)
def test_values_the_engine_refuses_are_refused_at_config_time(
    api, researcher, dataset_id, hyperparams, field
):
    response = _config(api, researcher, dataset_id, hyperparams=hyperparams)

    assert response.status_code == 400, response.json()
    error = response.json()["error"]
    assert error["message"].startswith(f"{field}:"), error
    assert error["details"] == {"param": field}
    assert not TrainingConfig.objects.exists()


def test_max_seq_length_up_to_the_model_limit_is_accepted(api, researcher, dataset_id):
    response = _config(api, researcher, dataset_id, hyperparams={"max_seq_length": 512, "packing": True})

    assert response.status_code == 201, response.json()
    assert response.json()["hyperparameters"]["max_seq_length"] == 512


def test_packing_on_a_classification_run_is_refused(api, researcher, artifact_root):
    rows = b'{"text": "good film", "label": "pos"}\n{"text": "bad film", "label": "neg"}\n' * 20
    version = dataset_prepare(owner=researcher, name="cls", content=rows, task_type="classification")

    response = _config(api, researcher, version.dataset.public_id, hyperparams={"packing": True})

    assert response.status_code == 400
    assert response.json()["error"]["message"].startswith("hyperparameters.packing:")


@pytest.mark.parametrize(
    ("fields", "field"),
    [
        ({"checkpointing": {"save_steps": 0}}, "checkpointing.save_steps"),
        ({"early_stopping": {"metric": "val_accuracy"}}, "early_stopping.metric"),
    ],
)
def test_checkpointing_and_early_stopping_name_the_field(api, researcher, dataset_id, fields, field):
    response = _config(api, researcher, dataset_id, **fields)

    assert response.status_code in (400, 422), response.json()
    body = response.json()
    assert field.split(".")[-1] in str(body), body


def test_the_estimate_endpoint_refuses_the_same_values(api, researcher, artifact_root):
    response = api.post(researcher, "/estimate", {"model_base": "t4dm-tiny", "hyperparams": {"seed": -1}})

    assert response.status_code == 400 and response.json()["error"]["message"].startswith(
        "hyperparameters.seed:"
    )


def test_a_stored_config_reads_as_a_valid_engine_spec(
    api, researcher, dataset_id, django_capture_on_commit_callbacks
):
    """What the platform stores is what the engine accepts: the worker's spec parses as a TrainingSpec."""
    config = _config(api, researcher, dataset_id, hyperparams={"logging_steps": 2, "packing": False}).json()
    stored = TrainingConfig.objects.get(pk=int(config["config_id"].split("-")[1]))
    with django_capture_on_commit_callbacks(execute=False):
        job = job_start(owner=researcher, config=stored)

    spec = TrainingSpec.from_dict(job_spec_for_worker(job=job))

    assert spec.hyperparameters.logging_steps == 2 and spec.packing is False
    assert spec.checkpointing.save_steps == stored.checkpointing["save_steps"]


def test_an_old_stored_config_stays_loadable(demo_config, django_capture_on_commit_callbacks):
    """A config stored before the spec existed (only the seed's keys, optional ones as null) still runs."""
    demo_config.hyperparameters = {
        "learning_rate": 2e-5,
        "batch_size": 4,
        "gradient_accumulation": 4,
        "epochs": 3,
        "warmup_ratio": 0.1,
        "lora_r": 16,
        "lora_alpha": 32,
        "lora_dropout": 0.1,
        "target_modules": ["q_proj", "v_proj"],
        "max_seq_length": 512,
        "seed": 42,
        "max_steps": None,
        "gpus": None,
    }
    demo_config.checkpointing = {"save_steps": 500, "save_total_limit": 3, "best_only": False}
    demo_config.save()
    with django_capture_on_commit_callbacks(execute=False):
        job = job_start(owner=demo_config.owner, config=demo_config)

    spec = TrainingSpec.from_dict(job_spec_for_worker(job=job))

    assert spec.hyperparameters.max_steps is None and spec.hyperparameters.gpus == 1


@pytest.mark.parametrize("hyperparams", [{"logging_steps": 0}, {"packing": "yes"}, {"seed": -1}])
def test_a_workflow_with_a_bad_hyperparameter_is_refused_up_front(
    api, researcher, artifact_root, hyperparams
):
    """Workflows make their config later (the configure step): their input is checked by the same spec."""
    from experiments.workflows.models import Workflow

    payload = {
        "model_base": "t4dm-tiny",
        "approach": "lora",
        "source": "knowledge",
        "hyperparams": hyperparams,
    }
    response = api.post(researcher, "/workflows", payload)

    assert response.status_code == 400, response.content
    assert response.json()["error"]["message"].startswith(f"hyperparameters.{next(iter(hyperparams))}:")
    assert not Workflow.objects.exists()
