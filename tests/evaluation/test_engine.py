"""The evaluation engine on real models: a chat LoRA on the tiny model against its base, bad
requests, compare_models / compare_versions, thresholds. No Django involved."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from experiments.training.engine import train
from experiments.training.evaluation import (
    check_thresholds,
    compare_models,
    compare_versions,
    evaluate_model,
    format_delta,
    parse_thresholds,
    resolve_metrics,
)
from experiments.training.reporter import MemoryReporter
from experiments.training.tiny_model import CORPUS_DIR

KNOWLEDGE_CHAT = CORPUS_DIR / "knowledge_chat.jsonl"


@pytest.fixture(scope="module")
def chat_split(tmp_path_factory) -> dict[str, Path]:
    """The shipped chat rows split 50 train / 10 held-out test."""
    folder = tmp_path_factory.mktemp("chat-split")
    lines = KNOWLEDGE_CHAT.read_text().splitlines()
    (folder / "train.jsonl").write_text("\n".join(lines[:50]) + "\n")
    (folder / "test.jsonl").write_text("\n".join(lines[50:]) + "\n")
    return {"train": folder / "train.jsonl", "test": folder / "test.jsonl"}


@pytest.fixture(scope="module")
def chat_lora(tiny_model_dir: Path, chat_split, tmp_path_factory) -> dict:
    """~100 LoRA steps at lr 3e-3 on the tiny model (a couple of seconds on CPU)."""
    spec = {
        "job_id": "job-eval-test",
        "model_base": str(tiny_model_dir),
        "approach": "lora",
        "task_type": "chat",
        "hyperparameters": {
            "learning_rate": 3e-3,
            "batch_size": 4,
            "gradient_accumulation": 1,
            "max_steps": 100,
            "lora_dropout": 0.0,
            "seed": 0,
            "logging_steps": 10,
        },
        "checkpointing": {"save_steps": 50, "save_total_limit": 2, "best_only": False},
        "dataset": {"train": str(chat_split["train"]), "validation": None},
        "output_dir": str(tmp_path_factory.mktemp("chat-lora") / "job"),
    }
    return train(spec, MemoryReporter())


def test_chat_lora_has_lower_perplexity_than_its_base(chat_lora, chat_split):
    progress: list[tuple[float, str]] = []

    result = evaluate_model(
        model_path=chat_lora["final_model_path"],
        test_file=chat_split["test"],
        task_type="chat",
        metrics=["perplexity", "bleu", "rouge", "exact_match", "f1"],
        progress=lambda fraction, message: progress.append((fraction, message)),
    )

    ppl, base_ppl = result["metrics"]["perplexity"], result["base_metrics"]["perplexity"]
    assert ppl < base_ppl / 2, (ppl, base_ppl)
    delta = result["comparison_to_base"]["perplexity_delta"]
    assert delta.startswith("-") and abs(float(delta) - (ppl - base_ppl)) < 1e-4
    assert set(result["metrics"]) >= {"perplexity", "bleu", "rouge1", "rougeL", "exact_match", "f1_score"}
    assert {"bleu_delta", "rougeL_delta", "f1_score_delta"} <= set(result["comparison_to_base"])
    assert result["details"]["perplexity"]["formula"].startswith("exp(")
    # Sample outputs: the seed's (prompt, reference, generated), prompts rendered with the chat template.
    sample = result["sample_outputs"][0]
    assert (
        sample["prompt"].endswith("<|assistant|>\n")
        and sample["reference"]
        and isinstance(sample["generated"], str)
    )
    assert len(result["examples"]) == 10 and "base_generated" in result["examples"][0]
    assert progress[-1] == (1.0, "done") and [f for f, _ in progress] == sorted(f for f, _ in progress)


def test_a_checkpoint_evaluates_like_the_final_model(chat_lora, chat_split):
    checkpoint = Path(chat_lora["output_dir"]) / "checkpoint-50"

    result = evaluate_model(
        model_path=str(checkpoint), test_file=chat_split["test"], task_type="chat", metrics=["perplexity"]
    )

    assert result["metrics"]["perplexity"] < result["base_metrics"]["perplexity"]


def test_a_full_model_compares_to_the_given_base(tiny_model_dir, chat_split):
    result = evaluate_model(
        model_path=str(tiny_model_dir),
        base_model=str(tiny_model_dir),
        test_file=chat_split["test"],
        task_type="chat",
        metrics=["perplexity"],
    )

    assert result["comparison_to_base"] == {"perplexity_delta": "+0"}


@pytest.mark.parametrize(
    ("task_type", "metrics", "message"),
    [
        ("chat", ["accuracy"], "'accuracy' does not fit a chat dataset"),
        ("classification", ["perplexity"], "'perplexity' does not fit a classification dataset"),
        ("chat", ["meteor"], "unknown metric 'meteor'"),
    ],
)
def test_metrics_that_do_not_fit_are_refused(task_type, metrics, message):
    with pytest.raises(ValueError, match=message):
        resolve_metrics(task_type, metrics)


def test_an_empty_test_set_or_a_missing_model_is_refused(tiny_model_dir, tmp_path, chat_split):
    empty = tmp_path / "empty.jsonl"
    empty.write_text("")
    with pytest.raises(ValueError, match="no rows to evaluate"):
        evaluate_model(model_path=str(tiny_model_dir), test_file=empty, task_type="chat")
    with pytest.raises(ValueError, match="does not exist"):
        evaluate_model(model_path=str(tmp_path / "nope"), test_file=chat_split["test"], task_type="chat")


def test_compare_models_gives_each_models_output_and_scores_per_case(chat_lora, tiny_model_dir):
    cases = [json.loads(line) for line in KNOWLEDGE_CHAT.read_text().splitlines()[50:53]]

    result = compare_models(
        models=[str(tiny_model_dir), chat_lora["final_model_path"]],
        test_cases=cases,
        task_type="chat",
        metrics=["perplexity", "rouge"],
    )

    assert len(result["cases"]) == 3
    outputs = result["cases"][0]["outputs"]
    assert [o["model"] for o in outputs] == [str(tiny_model_dir), chat_lora["final_model_path"]]
    assert {"perplexity", "rougeL"} <= set(outputs[1]["scores"])
    assert result["best"]["perplexity"] == chat_lora["final_model_path"]


def test_compare_versions_gives_bootstrap_intervals_and_wins(chat_lora, tiny_model_dir, chat_split):
    result = compare_versions(
        model_a=str(tiny_model_dir),
        model_b=chat_lora["final_model_path"],
        test_file=chat_split["test"],
        task_type="chat",
        metrics=["perplexity", "rouge"],
        resamples=200,
    )

    ppl = result["metrics"]["perplexity"]
    assert (
        ppl["better"] == "b" and ppl["ci_high"] < 0 and ppl["ci_low"] <= float(ppl["delta"]) <= ppl["ci_high"]
    )
    assert result["per_example"]["perplexity"] == {"wins": 10, "losses": 0, "ties": 0}
    assert sum(result["per_example"]["rougeL"].values()) == 10


def test_thresholds_pass_fail_and_skip():
    thresholds = parse_thresholds({"accuracy": {">=": 0.85}, "perplexity": {"<=": 10}})

    assert check_thresholds({"accuracy": 0.9}, thresholds)["passed"] is True
    failed = check_thresholds({"accuracy": 0.8}, thresholds)
    assert failed["passed"] is False
    assert [c["status"] for c in failed["checks"]] == ["failed", "skipped"]
    with pytest.raises(ValueError, match="unknown operator"):
        parse_thresholds({"accuracy": {"=>": 0.8}})


def test_deltas_are_signed_like_the_seed():
    assert format_delta(0.15) == "+0.15"
    assert format_delta(-2.3) == "-2.3"
    assert format_delta(0.0) == "+0"


def test_the_engine_does_not_import_django():
    import subprocess

    code = "import sys, experiments.training.evaluation; print('django' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
