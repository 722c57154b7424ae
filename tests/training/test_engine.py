from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from experiments.training.engine import train
from experiments.training.reporter import MemoryReporter
from experiments.training.tiny_model import CORPUS_DIR

KNOWLEDGE_CHAT = CORPUS_DIR / "knowledge_chat.jsonl"

METRIC_KEYS = {"loss", "learning_rate", "grad_norm", "tokens_per_sec", "eta_seconds"}


def test_lora_run_learns_and_reports(make_spec) -> None:
    # given
    reporter = MemoryReporter()
    spec = make_spec(
        hyperparameters={"max_steps": 40, "logging_steps": 5, "lora_r": 16, "lora_alpha": 32},
        checkpointing={"save_steps": 20, "save_total_limit": 2, "best_only": False},
        dataset={"train": str(KNOWLEDGE_CHAT), "validation": str(KNOWLEDGE_CHAT)},
    )

    # when
    result = train(spec, reporter)

    # then
    losses = reporter.values("loss")
    assert losses[-1] < losses[0] - 0.5, losses
    assert result["final_loss"] == pytest.approx(losses[-1])
    assert result["stopped"] == "completed"
    assert (result["global_step"], result["total_steps"]) == (40, 40)
    train_events = [e for e in reporter.metric_events if "loss" in e["values"]]
    assert all(set(e["values"]) == METRIC_KEYS and e["epoch"] > 0 for e in train_events)
    assert all(e["values"]["tokens_per_sec"] > 0 for e in train_events)
    assert [e["step"] for e in reporter.metric_events if "val_loss" in e["values"]] == [20, 40]
    assert [e["step"] for e in reporter.progress_events] == list(range(1, 41))
    assert reporter.progress_events[-1]["total_steps"] == 40
    checkpoints = reporter.checkpoint_events
    assert [c["step"] for c in checkpoints] == [20, 40]
    assert checkpoints[-1]["path"] == str(Path(spec["output_dir"]) / "checkpoint-40")
    assert "val_loss" in checkpoints[-1]["metrics"]
    final = Path(result["final_model_path"])
    assert (final / "adapter_model.safetensors").is_file() and (final / "tokenizer.json").is_file()


def test_cancel_stops_after_the_requested_step(make_spec) -> None:
    reporter = MemoryReporter(stop_after_step=3)

    result = train(make_spec(hyperparameters={"max_steps": 20}), reporter)

    assert result["stopped"] == "cancelled"
    assert result["global_step"] == 3
    assert reporter.progress_events[-1]["step"] == 3
    # a cancelled job keeps a checkpoint to resume from
    assert reporter.checkpoint_events[-1]["step"] == 3
    assert Path(reporter.checkpoint_events[-1]["path"]).is_dir()


def test_resume_continues_the_step_count(make_spec) -> None:
    # given a job cancelled after step 5, with a checkpoint there
    first = train(make_spec(), MemoryReporter(stop_after_step=5))
    checkpoint = Path(first["output_dir"]) / "checkpoint-5"
    assert checkpoint.is_dir()

    # when
    reporter = MemoryReporter()
    result = train(make_spec(resume_from_checkpoint=str(checkpoint)), reporter)

    # then
    assert reporter.progress_events[0]["step"] == 6
    assert (result["global_step"], result["stopped"]) == (10, "completed")
    assert [c["step"] for c in reporter.checkpoint_events] == [10]


def test_full_fine_tune_smoke(make_spec) -> None:
    reporter = MemoryReporter()

    result = train(
        make_spec(approach="full", hyperparameters={"max_steps": 4, "learning_rate": 1e-3}), reporter
    )

    assert result["global_step"] == 4 and result["stopped"] == "completed"
    assert (Path(result["final_model_path"]) / "model.safetensors").is_file()
    assert len(reporter.values("loss")) == 4


def test_early_stopping_ends_the_run(make_spec) -> None:
    # given a min_delta no evaluation can beat, so patience runs out at the second evaluation
    spec = make_spec(
        hyperparameters={"max_steps": 30},
        dataset={"train": str(KNOWLEDGE_CHAT), "validation": str(KNOWLEDGE_CHAT)},
        checkpointing={"save_steps": 5, "save_total_limit": 2, "best_only": False},
        early_stopping={"patience": 1, "min_delta": 100.0, "metric": "val_loss"},
    )

    result = train(spec, MemoryReporter())

    assert result["stopped"] == "early_stopped"
    assert result["global_step"] == 10
    # the Trainer tracks the best val_loss without the threshold: any small improvement counts there
    assert result["best_checkpoint"] in {str(Path(spec["output_dir"]) / f"checkpoint-{s}") for s in (5, 10)}


@pytest.mark.parametrize(
    ("overrides", "field"),
    [
        ({"approach": "qlora-ish"}, "approach"),
        ({"task_type": "regression"}, "task_type"),
        ({"hyperparameters": {"lora_r": 0}}, "hyperparameters.lora_r"),
        ({"hyperparameters": {"target_modules": ["nope_proj"]}}, "hyperparameters.target_modules"),
        ({"hyperparameters": {"learnin_rate": 1e-4}}, "hyperparameters.learnin_rate"),
        ({"dataset": {"train": "/nonexistent/train.jsonl"}}, "dataset.train"),
        ({"early_stopping": {"patience": 2}}, "early_stopping"),
        ({"resume_from_checkpoint": "/nonexistent/checkpoint-5"}, "resume_from_checkpoint"),
    ],
)
def test_bad_spec_is_rejected_naming_the_field(make_spec, overrides: dict, field: str) -> None:
    hyperparameters = overrides.pop("hyperparameters", None)
    spec = make_spec(**overrides)
    if hyperparameters:
        spec["hyperparameters"].update(hyperparameters)

    with pytest.raises(ValueError, match=rf"^{field}"):
        train(spec, MemoryReporter())


def test_engine_import_leaves_django_out() -> None:
    code = (
        "import sys\n"
        "import experiments.training.engine, experiments.training.__main__\n"
        "assert 'django' not in sys.modules, sorted(m for m in sys.modules if m.startswith('django'))\n"
    )
    completed = subprocess.run(
        [sys.executable, "-c", code], cwd=Path(__file__).resolve().parents[2], capture_output=True, text=True
    )

    assert completed.returncode == 0, completed.stderr
