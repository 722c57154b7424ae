from __future__ import annotations

from pathlib import Path

import datasets
import pytest

from experiments.training.tiny_model import CORPUS_DIR

KNOWLEDGE_CHAT = CORPUS_DIR / "knowledge_chat.jsonl"


@pytest.fixture(scope="session", autouse=True)
def _quiet_datasets() -> None:
    datasets.disable_progress_bars()


@pytest.fixture
def make_spec(tiny_model_dir: Path, tmp_path: Path):
    """A small, fast job spec; keyword arguments override hyperparameters, other keys replace top-level ones."""

    def make(*, hyperparameters: dict | None = None, **overrides) -> dict:
        spec = {
            "job_id": "job-test",
            "model_base": str(tiny_model_dir),
            "approach": "lora",
            "task_type": "chat",
            "hyperparameters": {
                "learning_rate": 3e-3,
                "batch_size": 4,
                "gradient_accumulation": 1,
                "max_steps": 10,
                "lora_dropout": 0.0,
                "seed": 0,
                "logging_steps": 1,
                **(hyperparameters or {}),
            },
            "early_stopping": None,
            "checkpointing": {"save_steps": 5, "save_total_limit": 3, "best_only": False},
            "dataset": {"train": str(KNOWLEDGE_CHAT), "validation": None},
            "output_dir": str(tmp_path / "job"),
            "resume_from_checkpoint": None,
        }
        spec.update(overrides)
        return spec

    return make
