"""compare_models (several models on the same test cases) and compare_versions (two models, paired
bootstrap confidence intervals for each metric's delta, per-example wins/losses/ties)."""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from sacrebleu.metrics import BLEU
from sklearn.metrics import precision_recall_fscore_support

from experiments.training.data import classification_labels, load_split
from experiments.training.evaluation.core import (
    Progress,
    ScoreResult,
    _no_progress,
    format_delta,
    load_model_for_eval,
    read_test_rows,
    score_model,
)
from experiments.training.evaluation.metrics import CLASSIFICATION_TASKS, LOWER_IS_BETTER, resolve_metrics


def _score_all(
    models: list[str],
    rows: list[dict[str, Any]],
    task_type: str,
    metrics: list[str] | None,
    *,
    labels: list[str] | None,
    base_model: str | None,
    progress: Progress,
    **options: Any,
) -> list[ScoreResult]:
    specs = resolve_metrics(task_type, metrics)
    if task_type in CLASSIFICATION_TASKS and not labels:
        labels = sorted({str(r["label"]) for r in rows})
    results = []
    for n, path in enumerate(models):
        progress(n / len(models), f"scoring {path}")
        lm = load_model_for_eval(path, task_type, labels=labels, base_model=base_model)
        results.append(score_model(lm, rows, task_type, specs, **options))
    return results


def compare_models(
    *,
    models: list[str],
    test_cases: list[dict[str, Any]],
    task_type: str,
    metrics: list[str] | None = None,
    labels: list[str] | None = None,
    base_model: str | None = None,
    max_new_tokens: int = 48,
    progress: Progress = _no_progress,
) -> dict[str, Any]:
    """The seed's ComparisonResult: per case, each model's output and per-case scores; plus aggregates."""
    if len(models) < 2:
        raise ValueError("models: give at least two models to compare")
    if not test_cases:
        raise ValueError("test_cases: give at least one test case")
    results = _score_all(
        models,
        test_cases,
        task_type,
        metrics,
        labels=labels,
        base_model=base_model,
        progress=progress,
        max_new_tokens=max_new_tokens,
        sample_outputs=len(test_cases),
    )
    cases = []
    for i in range(len(test_cases)):
        first = results[0].examples[i]
        cases.append(
            {
                "index": i,
                "prompt": first.get("prompt", ""),
                "reference": first.get("reference", ""),
                "outputs": [
                    {
                        "model": path,
                        "generated": r.examples[i].get("generated"),
                        "scores": r.examples[i]["scores"],
                    }
                    for path, r in zip(models, results, strict=True)
                ],
            }
        )
    aggregates = {path: r.metrics for path, r in zip(models, results, strict=True)}
    best = {}
    for key in results[0].metrics:
        values = {path: r.metrics[key] for path, r in zip(models, results, strict=True)}
        pick = min if key in LOWER_IS_BETTER else max
        best[key] = pick(values, key=values.get)
    progress(1.0, "done")
    return {"models": models, "task_type": task_type, "cases": cases, "aggregates": aggregates, "best": best}


# --- compare_versions -------------------------------------------------------------------------------


def _statistics(result: ScoreResult, task_type: str) -> dict[str, Callable[[np.ndarray], float]]:
    """For each metric, a function of resampled row indices → the metric on that resample."""
    raw = result.raw
    stats: dict[str, Callable[[np.ndarray], float]] = {}
    if task_type in CLASSIFICATION_TASKS:
        predictions, references, labels = (
            np.array(raw["predictions"]),
            np.array(raw["references"]),
            raw["labels"],
        )
        correct = predictions == references
        if "accuracy" in result.metrics:
            stats["accuracy"] = lambda idx: float(correct[idx].mean())
        for key, position in (("precision", 0), ("recall", 1), ("f1_score", 2)):
            if key in result.metrics:
                stats[key] = lambda idx, p=position: float(
                    precision_recall_fscore_support(
                        references[idx], predictions[idx], labels=labels, average="macro", zero_division=0
                    )[p]
                )
        return stats
    if "nll" in raw and "perplexity" in result.metrics:
        nll = np.array([n for n, _ in raw["nll"]], dtype=np.float64)
        tokens = np.array([t for _, t in raw["nll"]], dtype=np.float64)
        stats["perplexity"] = lambda idx: math.exp(nll[idx].sum() / max(tokens[idx].sum(), 1.0))
    # Row i of the test set sits at position prompted_index.index(i) in the generated lists.
    position = {row: k for k, row in enumerate(raw.get("prompted_index", []))}
    for key, values in raw.get("per_example", {}).items():
        if key == "bleu":
            generated, references = raw["generated"], raw["references"]

            def corpus_bleu(idx: np.ndarray, g=generated, r=references) -> float:
                ks = [position[i] for i in idx if i in position]
                return BLEU().corpus_score([g[k] for k in ks], [[r[k] for k in ks]]).score / 100

            stats["bleu"] = corpus_bleu
        else:
            array = np.array(values, dtype=np.float64)
            stats[key] = lambda idx, a=array: float(np.mean([a[position[i]] for i in idx if i in position]))
    return stats


def _per_example_scores(result: ScoreResult, task_type: str) -> dict[str, list[float | None]]:
    n = len(result.examples)
    if task_type in CLASSIFICATION_TASKS:
        return {"correct": [e["scores"]["correct"] for e in result.examples]}
    scores: dict[str, list[float | None]] = {}
    for i, example in enumerate(result.examples):
        for key, value in example["scores"].items():
            scores.setdefault(key, [None] * n)[i] = value
    return scores


def paired_bootstrap(
    stat_a: Callable[[np.ndarray], float],
    stat_b: Callable[[np.ndarray], float],
    n: int,
    *,
    resamples: int = 1000,
    confidence: float = 0.95,
    seed: int = 0,
) -> dict[str, float]:
    """Resample rows with replacement (the same rows for both models); the CI of metric(B) − metric(A)."""
    rng = np.random.default_rng(seed)
    deltas = np.empty(resamples)
    for k in range(resamples):
        idx = rng.integers(0, n, size=n)
        deltas[k] = stat_b(idx) - stat_a(idx)
    alpha = (1 - confidence) / 2
    return {
        "ci_low": float(np.quantile(deltas, alpha)),
        "ci_high": float(np.quantile(deltas, 1 - alpha)),
        "p_b_better": float(np.mean(deltas > 0)),
        "resamples": resamples,
        "confidence": confidence,
    }


def compare_versions(
    *,
    model_a: str,
    model_b: str,
    test_file: str | Path,
    task_type: str,
    metrics: list[str] | None = None,
    labels: list[str] | None = None,
    labels_from: str | Path | None = None,
    base_model: str | None = None,
    max_samples: int | None = None,
    resamples: int = 1000,
    confidence: float = 0.95,
    max_new_tokens: int = 48,
    seed: int = 0,
    progress: Progress = _no_progress,
) -> dict[str, Any]:
    """The seed's VersionComparison: metric deltas (B − A) with paired bootstrap CIs, and per-example
    wins/losses/ties of B against A (higher is better, except perplexity where lower is)."""
    rows = read_test_rows(test_file, max_samples=max_samples)
    if task_type in CLASSIFICATION_TASKS and not labels:
        labels = classification_labels(load_split(labels_from or test_file))
    score_a, score_b = _score_all(
        [model_a, model_b],
        rows,
        task_type,
        metrics,
        labels=labels,
        base_model=base_model,
        progress=progress,
        max_new_tokens=max_new_tokens,
        sample_outputs=0,
    )
    stats_a, stats_b = _statistics(score_a, task_type), _statistics(score_b, task_type)
    progress(0.8, f"bootstrapping {resamples} resamples")
    deltas = {}
    for key, value_a in score_a.metrics.items():
        value_b = score_b.metrics[key]
        entry = {"a": value_a, "b": value_b, "delta": format_delta(value_b - value_a)}
        if key in stats_a and key in stats_b:
            entry.update(
                paired_bootstrap(
                    stats_a[key],
                    stats_b[key],
                    len(rows),
                    resamples=resamples,
                    confidence=confidence,
                    seed=seed,
                )
            )
        gain = (value_b - value_a) * (-1 if key in LOWER_IS_BETTER else 1)
        entry["better"] = "b" if gain > 0 else "a" if gain < 0 else "tie"
        deltas[key] = entry
    per_example_a, per_example_b = (
        _per_example_scores(score_a, task_type),
        _per_example_scores(score_b, task_type),
    )
    head_to_head = {}
    for key, values_a in per_example_a.items():
        values_b = per_example_b.get(key, [])
        sign = -1 if key in LOWER_IS_BETTER else 1
        wins = losses = ties = 0
        for a, b in zip(values_a, values_b, strict=False):
            if a is None or b is None:
                continue
            diff = sign * (b - a)
            if abs(diff) < 1e-12:
                ties += 1
            elif diff > 0:
                wins += 1
            else:
                losses += 1
        head_to_head[key] = {"wins": wins, "losses": losses, "ties": ties}
    examples = [
        {
            "index": i,
            "prompt": a.get("prompt", ""),
            "reference": a.get("reference", ""),
            "a": {"generated": a.get("generated"), "scores": a["scores"]},
            "b": {"generated": b.get("generated"), "scores": b["scores"]},
        }
        for i, (a, b) in enumerate(zip(score_a.examples, score_b.examples, strict=True))
    ]
    progress(1.0, "done")
    return {
        "version_a": model_a,
        "version_b": model_b,
        "task_type": task_type,
        "num_examples": len(rows),
        "metrics": deltas,
        "per_example": head_to_head,
        "examples": examples,
    }
