"""The demo: chat samples made from the shipped example knowledge base (datasets_app/knowledge/
example_kb.json) by prepare_from_knowledge, LoRA on the built-in tiny model."""

from __future__ import annotations

from datasets_app.services import dataset_prepare_from_knowledge
from experiments.models import TrainingJob
from experiments.services import TINY_MODEL_NAME, job_start, training_config_create

# The tiny model starts from random weights, so it needs a far higher learning rate than the seed's
# 2e-5 (meant for pretrained 8B models) to show a falling curve within a minute on a CPU.
DEMO_HYPERPARAMETERS = {
    "learning_rate": 3e-3,
    "batch_size": 8,
    "gradient_accumulation": 1,
    "epochs": 40,
    "lora_r": 8,
    "lora_alpha": 16,
    "warmup_ratio": 0.05,
}


def demo_job_start(*, owner, hyperparams: dict | None = None) -> TrainingJob:
    version = dataset_prepare_from_knowledge(owner=owner, name="T4DM handbook (demo)")
    config = training_config_create(
        owner=owner,
        dataset_id=version.dataset.public_id,
        model_base=TINY_MODEL_NAME,
        approach="lora",
        hyperparams={**DEMO_HYPERPARAMETERS, **(hyperparams or {})},
        checkpointing={"save_steps": 20, "save_total_limit": 3, "best_only": False},
    )
    return job_start(owner=owner, config=config)
