"""Registry fixtures: jobs that really trained the tiny model, and finished evaluations of them."""

from __future__ import annotations

from pathlib import Path

import pytest

from experiments.training.engine import train
from experiments.training.reporter import MemoryReporter
from experiments.training.tiny_model import CORPUS_DIR


@pytest.fixture(autouse=True)
def _no_compare_to_base(settings):
    """compare_to_base queues a real evaluation (a Celery task); tests that look at it turn it on."""
    settings.T4DM_VERSIONING = {"auto_version": True, "compare_to_base": False}


@pytest.fixture(scope="session")
def trained_final(tiny_model_dir: Path, tmp_path_factory) -> dict:
    """A LoRA adapter over the tiny model, trained for a few steps once per session."""
    spec = {
        "job_id": "job-registry",
        "model_base": str(tiny_model_dir),
        "approach": "lora",
        "task_type": "chat",
        "hyperparameters": {
            "learning_rate": 3e-3,
            "batch_size": 4,
            "gradient_accumulation": 1,
            "max_steps": 8,
            "lora_dropout": 0.0,
            "seed": 0,
            "logging_steps": 1,
        },
        "early_stopping": None,
        "checkpointing": {"save_steps": 100, "save_total_limit": 1, "best_only": False},
        "dataset": {"train": str(CORPUS_DIR / "knowledge_chat.jsonl"), "validation": None},
        "output_dir": str(tmp_path_factory.mktemp("registry-job")),
        "resume_from_checkpoint": None,
    }
    return train(spec, MemoryReporter())


@pytest.fixture
def make_config(researcher, artifact_root):
    """A config on a dataset (named `name`; same name → a new version of that dataset)."""
    from datasets_app.services import dataset_prepare
    from experiments.services import training_config_create
    from tests.conftest import DEMO_ROWS

    def make(
        *, owner=None, name: str = "knowledge", rows: bytes | None = None, model_base: str = "t4dm-tiny", **hp
    ):
        owner = owner or researcher
        version = dataset_prepare(
            owner=owner, name=name, content=rows or DEMO_ROWS.read_bytes(), task_type="chat"
        )
        return training_config_create(
            owner=owner,
            dataset_id=version.dataset.public_id,
            model_base=model_base,
            approach="lora",
            hyperparams={"learning_rate": 3e-3, "epochs": 1, **hp},
        )

    return make


@pytest.fixture
def succeeded_job(django_capture_on_commit_callbacks, trained_final):
    """A job of `config` moved through queued → running → succeeded, its final model a real adapter."""
    from experiments.services import job_start

    def make(config):
        with django_capture_on_commit_callbacks(execute=False):
            job = job_start(owner=config.owner, config=config)
        job.mark_running(worker="test-worker")
        job.latest_metrics = {"loss": trained_final["final_loss"]}
        job.save(update_fields=["latest_metrics"])
        job.mark_succeeded(final_model_path=trained_final["final_model_path"])
        return job

    return make


@pytest.fixture
def finished_evaluation():
    """A succeeded evaluation row of a job, as the evaluation engine leaves it."""
    from experiments.models import Evaluation, EvaluationStatus

    def make(job, *, metrics=None, comparison=None):
        return Evaluation.objects.create(
            owner=job.owner,
            model_path=job.final_model_path,
            job=job,
            dataset_version=job.config.dataset_version,
            status=EvaluationStatus.SUCCEEDED,
            metrics=metrics if metrics is not None else {"accuracy": 0.92, "perplexity": 8.5},
            comparison_to_base=comparison
            if comparison is not None
            else {"accuracy_delta": "+0.15", "perplexity_delta": "-2.3"},
            sample_outputs=[{"prompt": "hi", "output": "hello"}],
        )

    return make
