"""The typed training spec (experiments/training/spec.py): defaults, field-named errors, old dicts."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from experiments.training.spec import (
    Checkpointing,
    EarlyStopping,
    Hyperparameters,
    SpecError,
    TrainingSpec,
    check_model_limits,
    seed_defaults,
)

BASE = {"job_id": "job-1", "model_base": "/m", "output_dir": "/o", "dataset": {"train": "/t.jsonl"}}


def test_defaults_are_the_seeds() -> None:
    assert seed_defaults() == {
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
    }
    assert Checkpointing().to_dict() == {"save_steps": 500, "save_total_limit": 3, "best_only": False}
    assert EarlyStopping().to_dict() == {"patience": 3, "min_delta": 0.01, "metric": "val_loss"}


@pytest.mark.parametrize(
    ("values", "field"),
    [
        ({"packing": "yes"}, "hyperparameters.packing"),
        ({"packing": 1}, "hyperparameters.packing"),
        ({"gradient_checkpointing": "no"}, "hyperparameters.gradient_checkpointing"),
        ({"logging_steps": 0}, "hyperparameters.logging_steps"),
        ({"seed": -1}, "hyperparameters.seed"),
        ({"micro_batch_tokens": 16}, "hyperparameters.micro_batch_tokens"),
        ({"learning_rate": float("nan")}, "hyperparameters.learning_rate"),
        ({"batch_size": True}, "hyperparameters.batch_size"),
        ({"lora_dropout": 1}, "hyperparameters.lora_dropout"),
        ({"target_modules": []}, "hyperparameters.target_modules"),
        ({"device": "tpu"}, "hyperparameters.device"),
        ({"full_recipe": "fp8"}, "hyperparameters.full_recipe"),
        ({"learning_rate": None}, "hyperparameters.learning_rate"),
        ({"learnin_rate": 1e-4}, "hyperparameters.learnin_rate"),
    ],
)
def test_a_bad_hyperparameter_names_its_field(values: dict, field: str) -> None:
    with pytest.raises(SpecError) as raised:
        Hyperparameters.from_dict(values)

    assert raised.value.field == field
    assert str(raised.value).startswith(f"{field}: ")
    assert isinstance(raised.value, ValueError)


def test_packing_only_where_it_applies() -> None:
    assert Hyperparameters.from_dict({"packing": True}, approach="full").packing is True
    with pytest.raises(SpecError, match=r"^hyperparameters\.packing"):
        Hyperparameters.from_dict({"packing": True}, approach="lora", task_type="classification")
    spec = TrainingSpec.from_dict({**BASE, "approach": "prompt_tuning"})  # packs too (issue 20)
    assert spec.packing is True and spec.to_dict()["hyperparameters"]["packing"] is True
    assert TrainingSpec.from_dict(BASE).packing is True  # "auto" on a causal LoRA run


def test_optional_nulls_mean_the_default() -> None:
    """Configs stored by earlier versions hold null for optional knobs: they still load."""
    hp = Hyperparameters.from_dict({**seed_defaults(), "max_steps": None, "gpus": None, "device": None})

    assert (hp.max_steps, hp.gpus, hp.device) == (None, 1, "auto")


@pytest.mark.parametrize(
    ("overrides", "field"),
    [
        ({"job_id": ""}, "job_id"),
        ({"approach": "api"}, "approach"),
        ({"task_type": "regression"}, "task_type"),
        ({"dataset": {"validation": "/v.jsonl"}}, "dataset.train"),
        ({"checkpointing": {"save_steps": 0}}, "checkpointing.save_steps"),
        ({"checkpointing": {"best_only": "yes"}}, "checkpointing.best_only"),
        ({"checkpointing": {"keep": 1}}, "checkpointing.keep"),
        ({"checkpointing": {"best_only": True}}, "checkpointing.best_only"),  # no validation split
        ({"early_stopping": {"patience": 2}}, "early_stopping"),  # no validation split
        (
            {"early_stopping": {"metric": "val_accuracy"}, "dataset": {"train": "/t", "validation": "/v"}},
            "early_stopping.metric",
        ),
        (
            {"early_stopping": {"patience": 0}, "dataset": {"train": "/t", "validation": "/v"}},
            "early_stopping.patience",
        ),
    ],
)
def test_a_bad_spec_names_its_field(overrides: dict, field: str) -> None:
    with pytest.raises(SpecError) as raised:
        TrainingSpec.from_dict({**BASE, **overrides})

    assert raised.value.field == field


def test_the_workers_spec_reads_whole() -> None:
    spec = TrainingSpec.from_dict(
        {
            **BASE,
            "dataset": {"train": "/t", "validation": "/v"},
            "hyperparameters": {"logging_steps": 5},
            "early_stopping": {"patience": 2, "metric": "val_loss"},
            "checkpointing": {"save_steps": 10, "save_total_limit": 2, "best_only": True},
            "attempt": 2,
            "resources": {"gpu_memory_mb": 100, "gpus": 1},
            "eval_on_start": True,
        }
    )

    assert spec.hyperparameters.logging_steps == 5 and spec.hyperparameters.learning_rate == 2e-5
    assert spec.early_stopping == EarlyStopping(patience=2) and spec.checkpointing.best_only
    assert spec.best_metric == ("eval_loss", False) and spec.eval_on_start and spec.attempt == 2


def test_max_seq_length_against_the_models_positions() -> None:
    check_model_limits(max_seq_length=512, model_config={"max_position_embeddings": 512})
    check_model_limits(max_seq_length=100000, model_config={})  # the model does not say: no limit here
    with pytest.raises(SpecError, match=r"^hyperparameters\.max_seq_length: must be at most 1024"):
        check_model_limits(max_seq_length=2048, model_config={"n_positions": 1024})


def test_the_spec_imports_neither_torch_nor_django() -> None:
    code = (
        "import sys\n"
        "import experiments.training.spec\n"
        "bad = sorted(m for m in sys.modules if m.split('.')[0] in ('torch', 'django', 'transformers'))\n"
        "assert not bad, bad\n"
    )
    completed = subprocess.run(
        [sys.executable, "-c", code], cwd=Path(__file__).resolve().parents[2], capture_output=True, text=True
    )

    assert completed.returncode == 0, completed.stderr


@pytest.mark.parametrize(
    ("values", "field"),
    [
        ({"weight_decay": -0.1}, "hyperparameters.weight_decay"),
        ({"weight_decay": "lots"}, "hyperparameters.weight_decay"),
        ({"lr_scheduler": "wobbly"}, "hyperparameters.lr_scheduler"),
        ({"eval_steps": 0}, "hyperparameters.eval_steps"),
    ],
)
def test_the_training_forms_advanced_options_name_their_field(values: dict, field: str) -> None:
    with pytest.raises(SpecError) as raised:
        Hyperparameters.from_dict(values)
    assert raised.value.field == field


def test_weight_decay_scheduler_and_eval_interval_reach_the_trainer(tmp_path) -> None:
    """Issue 19's advanced options: weight decay, the LR schedule and the evaluation interval are
    hyperparameters the engine hands to the Trainer (they were fixed before)."""
    from experiments.training.components import training_arguments

    spec = TrainingSpec.from_dict(
        {
            **BASE,
            "output_dir": str(tmp_path),
            "dataset": {"train": "/t", "validation": "/v"},
            "hyperparameters": {"weight_decay": 0.05, "lr_scheduler": "cosine", "eval_steps": 5},
            "checkpointing": {"save_steps": 20},
        }
    )
    args = training_arguments(spec, use_bf16=False, on_gpu=False)
    assert args.weight_decay == 0.05
    assert getattr(args.lr_scheduler_type, "value", args.lr_scheduler_type) == "cosine"
    assert args.eval_steps == 5 and args.save_steps == 20
    default = training_arguments(
        TrainingSpec.from_dict(
            {**BASE, "output_dir": str(tmp_path), "dataset": {"train": "/t", "validation": "/v"}}
        ),
        use_bf16=False,
        on_gpu=False,
    )
    assert default.weight_decay == 0.0
    assert getattr(default.lr_scheduler_type, "value", default.lr_scheduler_type) == "linear"
    assert default.eval_steps == default.save_steps
    with pytest.raises(SpecError) as raised:  # the best checkpoint is chosen among evaluated steps
        TrainingSpec.from_dict(
            {
                **BASE,
                "dataset": {"train": "/t", "validation": "/v"},
                "hyperparameters": {"eval_steps": 7},
                "checkpointing": {"save_steps": 20},
            }
        )
    assert raised.value.field == "hyperparameters.eval_steps"
