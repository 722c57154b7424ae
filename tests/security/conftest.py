"""Security fixtures: one user per role, with API tokens, and a job each for the owner checks."""

from __future__ import annotations

import pytest


@pytest.fixture
def people(make_user):
    """admin, researcher (owner), another researcher (non-owner), evaluator; each has .raw_token."""
    return {
        "admin": make_user("ada", role="admin"),
        "owner": make_user("olga", role="researcher"),
        "other": make_user("oscar", role="researcher"),
        "evaluator": make_user("eve", role="evaluator"),
    }


@pytest.fixture
def world(people, artifact_root, tiny_model_dir, settings, django_capture_on_commit_callbacks):
    """Records owned by `owner` (and one job of `other`), their public ids, and each job's worker token.
    No Celery task is sent: the on-commit enqueues are captured and dropped."""
    from datasets_app.services import dataset_augment_request, dataset_prepare
    from experiments.human_eval.services import human_eval_setup, items_create
    from experiments.mlflow_compat import services as mlflow
    from experiments.models import Evaluation, EvaluationStatus, TrainingJob
    from experiments.openai_compat.models import ProviderJob
    from experiments.openai_compat.services import file_upload
    from experiments.openai_compat.services import job_create as openai_job_create
    from experiments.services import checkpoint_record, experiment_create, job_start, training_config_create
    from models_registry.services import model_version_create
    from tests.conftest import DEMO_ROWS

    settings.T4DM_VERSIONING = {"auto_version": False, "compare_to_base": False}
    settings.OPENAI_BASE_URL = "http://127.0.0.1:9/v1"  # nothing listens: no request leaves this machine
    owner, other, evaluator = people["owner"], people["other"], people["evaluator"]
    with django_capture_on_commit_callbacks(execute=False):
        version = dataset_prepare(
            owner=owner, name="secret-set", content=DEMO_ROWS.read_bytes(), task_type="chat"
        )
        experiment = experiment_create(owner=owner, name="owner-exp")
        config = training_config_create(
            owner=owner,
            dataset_id=version.dataset.public_id,
            model_base="t4dm-tiny",
            approach="lora",
            hyperparams={"learning_rate": 3e-3, "epochs": 1},
        )
        job = job_start(owner=owner, config=config)
        done = job_start(owner=owner, config=config)
        other_version = dataset_prepare(
            owner=other, name="other-set", content=DEMO_ROWS.read_bytes(), task_type="chat"
        )
        other_config = training_config_create(
            owner=other, dataset_id=other_version.dataset.public_id, model_base="t4dm-tiny", approach="lora",
            hyperparams={"learning_rate": 3e-3, "epochs": 1},
        )  # fmt: skip
        other_job = job_start(owner=other, config=other_config)
        job_token, other_job_token = job.issue_token(), other_job.issue_token()
        done.mark_running(worker="w")
        done.mark_succeeded(final_model_path=str(tiny_model_dir))
        model_version = model_version_create(job=done, model_id="owner-model")
        evaluation = Evaluation.objects.create(
            owner=owner, model_path=str(tiny_model_dir), job=done, dataset_version=version,
            status=EvaluationStatus.SUCCEEDED, metrics={"accuracy": 0.9}, sample_outputs=[],
        )  # fmt: skip
        task = human_eval_setup(
            owner=owner, model_path="t4dm-tiny", eval_questions=["Q1?", "Q2?"],
            evaluators=[evaluator.username], overlap=1,
        )  # fmt: skip
        items_create(task=task, outputs=[["a1", "a2"]])
        openai_file = file_upload(
            owner=owner, filename="train.jsonl", content=DEMO_ROWS.read_bytes(), purpose="fine-tune"
        )
        ftjob = openai_job_create(owner=owner, model="t4dm-tiny", training_file=openai_file.file_id)
        dataset_task = dataset_augment_request(owner=owner, version=version, methods=["template_paraphrase"])
        checkpoint_record(job=done, step=1, path=str(tiny_model_dir), metrics={})
        ProviderJob.objects.create(
            job=done, provider="openai", remote_job_id="ftjob-remote", base_url=settings.OPENAI_BASE_URL
        )
        mlflow_experiment = mlflow.experiment_create(owner=owner, name="owner-mlflow")
        run = mlflow.run_create(
            owner=owner, experiment=mlflow_experiment, run_name="owner-run", tags={"t": "1"}
        )
    assert TrainingJob.objects.filter(owner=owner).count() >= 3
    from t4dm_site.services import api_token_create

    revoked, revoked_raw = api_token_create(user=owner, name="revoked")
    revoked.revoke()
    task.refresh_from_db()
    assignment = task.assignments.first() if hasattr(task, "assignments") else None
    return {
        "dataset_id": version.dataset.public_id,
        "experiment_id": experiment.public_id,
        "config_id": config.public_id,
        "job_id": job.public_id,
        "job_token": job_token,
        "done_job_id": done.public_id,
        "revoked_token": revoked_raw,
        "other_job_token": other_job_token,
        "evaluation_id": evaluation.public_id,
        "model_id": model_version.model_id,
        "version": model_version.version,
        "human_eval_task_id": task.public_id,
        "assignment": assignment,
        "file_id": openai_file.file_id,
        "fine_tuning_job_id": ftjob.ftjob_id,
        "dataset_task_id": dataset_task.public_id,
        "mlflow_experiment_id": str(mlflow_experiment.pk),
        "run_id": run.run_uuid,
    }
