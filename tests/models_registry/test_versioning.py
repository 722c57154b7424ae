"""auto_version: the seed's version schema and the semver rule."""

from __future__ import annotations

import pytest

from experiments.models import TrainingConfig
from models_registry.models import ModelVersion, StageTransition
from models_registry.selectors import model_version_schema
from models_registry.services import model_version_auto_create, next_version
from tests.conftest import DEMO_ROWS

pytestmark = pytest.mark.django_db


def _fewer_rows() -> bytes:
    lines = DEMO_ROWS.read_bytes().splitlines(keepends=True)
    return b"".join(lines[:-3])


def test_first_succeeded_job_becomes_1_0_0_with_the_seed_schema(make_config, succeeded_job, trained_final):
    # given
    job = succeeded_job(make_config())
    # when
    version = model_version_auto_create(job=job)
    # then
    schema = model_version_schema(version)
    assert list(schema) == [
        "model_id",
        "version",
        "base_model",
        "training",
        "evaluation",
        "created_at",
        "created_by",
    ]
    assert list(schema["training"]) == ["dataset", "config", "final_loss"]
    assert schema["model_id"] == "t4dm-knowledge"
    assert schema["version"] == "1.0.0"
    assert schema["base_model"] == "t4dm-tiny"
    assert schema["training"] == {
        "dataset": job.config.dataset_version.dataset.public_id,
        "config": job.config.public_id,
        "final_loss": pytest.approx(trained_final["final_loss"]),
    }
    assert schema["created_by"] == "t4dm-finetune"
    assert version.job == job and version.dataset_version == job.config.dataset_version
    assert version.artifact_path == trained_final["final_model_path"]
    assert "## Limitations" in version.model_card and "## Training data" in version.model_card


def test_auto_create_is_idempotent_per_job(make_config, succeeded_job):
    job = succeeded_job(make_config())
    first = model_version_auto_create(job=job)
    again = model_version_auto_create(job=job)
    assert again.pk == first.pk
    assert ModelVersion.objects.count() == 1


def test_hyperparameters_only_is_a_patch(make_config, succeeded_job):
    config = make_config()
    model_version_auto_create(job=succeeded_job(config))
    other = TrainingConfig.objects.get(pk=config.pk)
    other.pk = None
    other.hyperparameters = {**config.hyperparameters, "learning_rate": 1e-3}
    other.save()
    version = model_version_auto_create(job=succeeded_job(other))
    assert version.version == "1.0.1"
    assert version.version_reason.startswith("patch")


def test_new_dataset_version_is_a_minor(make_config, succeeded_job):
    model_version_auto_create(job=succeeded_job(make_config()))
    model_version_auto_create(job=succeeded_job(make_config(lora_r=8)))  # same data again: patch
    version = model_version_auto_create(job=succeeded_job(make_config(rows=_fewer_rows())))
    assert version.version == "1.1.0"
    assert version.version_reason.startswith("minor")


def test_new_base_model_is_a_major(make_config, succeeded_job, tiny_model_dir):
    model_version_auto_create(job=succeeded_job(make_config()))
    model_version_auto_create(job=succeeded_job(make_config(rows=_fewer_rows())))
    version = model_version_auto_create(job=succeeded_job(make_config(model_base=str(tiny_model_dir))))
    assert version.version == "2.0.0"
    assert version.version_reason.startswith("major: new base model")


def test_new_task_type_is_a_major():
    previous = ModelVersion(
        version="1.4.2", base_model="t4dm-tiny", dataset_version_id=1, config=TrainingConfig(task_type="chat")
    )
    version, why = next_version(
        previous=previous, base_model="t4dm-tiny", task_type="classification", dataset_version_id=1
    )
    assert (version, why.split(":")[0]) == ("2.0.0", "major")


def test_a_job_that_did_not_succeed_gets_no_version(make_config, django_capture_on_commit_callbacks):
    from experiments.services import job_start
    from t4dm_site.errors import Conflict

    config = make_config()
    with django_capture_on_commit_callbacks(execute=False):
        job = job_start(owner=config.owner, config=config)
    job.mark_failed(error="CUDA out of memory")
    with pytest.raises(Conflict, match="only a succeeded job"):
        model_version_auto_create(job=job)
    assert not ModelVersion.objects.exists()


def test_registration_is_the_first_history_entry(make_config, succeeded_job):
    version = model_version_auto_create(job=succeeded_job(make_config()))
    entry = StageTransition.objects.get(version=version)
    assert (entry.from_stage, entry.to_stage, entry.actor_name) == ("none", "none", "t4dm-finetune")
    assert "first version" in entry.reason


def test_evaluation_of_the_job_is_linked_into_the_schema(make_config, succeeded_job, finished_evaluation):
    job = succeeded_job(make_config())
    evaluation = finished_evaluation(job)
    version = model_version_auto_create(job=job)
    assert version.evaluation == evaluation
    assert model_version_schema(version)["evaluation"] == {"accuracy": 0.92, "perplexity": 8.5}


def test_compare_to_base_queues_an_evaluation_against_the_base(
    make_config, succeeded_job, settings, django_capture_on_commit_callbacks
):
    from experiments.models import Evaluation

    settings.T4DM_VERSIONING = {"auto_version": True, "compare_to_base": True}
    job = succeeded_job(make_config())
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        version = model_version_auto_create(job=job)
    assert len(callbacks) == 1
    with django_capture_on_commit_callbacks(execute=False) as enqueued:  # the evaluation's Celery task
        callbacks[0]()
    evaluation = Evaluation.objects.get()
    assert (evaluation.kind, evaluation.job, evaluation.model_path) == (
        "evaluate",
        job,
        version.artifact_path,
    )
    assert evaluation.params["compare_to_base"] is True and evaluation.base_model
    assert len(enqueued) == 1


def test_auto_version_off_creates_nothing(make_config, succeeded_job, settings):
    settings.T4DM_VERSIONING = {"auto_version": False}
    assert model_version_auto_create(job=succeeded_job(make_config())) is None
    assert not ModelVersion.objects.exists()


def test_the_automatic_model_id_leaves_out_the_data_file_extension(make_config, succeeded_job):
    """A dataset uploaded as "support.jsonl" names its model t4dm-support, not t4dm-supportjsonl."""
    job = succeeded_job(make_config())
    dataset = job.config.dataset_version.dataset
    dataset.name = "Support Tickets.JSONL"
    dataset.save(update_fields=["name"])
    assert model_version_auto_create(job=job).model_id == "t4dm-support-tickets"
