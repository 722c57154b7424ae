"""Which metrics exist, which task types they fit, and how to load their local `evaluate` modules.

Request names follow the seed ("accuracy", "perplexity", "f1", ...). A name maps to one module in
experiments/training/metrics/<module>/ and to the result keys it contributes. "f1" means macro F1 for
classification and SQuAD token F1 for generative tasks; both are reported as ``f1_score``.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from pathlib import Path
from typing import Any

METRICS_DIR = Path(__file__).resolve().parent.parent / "metrics"
GENERATIVE_TASKS = ("chat", "instruction", "completion")
CLASSIFICATION_TASKS = ("classification",)


@dataclass(frozen=True)
class MetricSpec:
    name: str
    module: str
    keys: tuple[str, ...]
    task_types: tuple[str, ...]
    higher_is_better: bool = True
    # What a per-example score is called in the browser (None: no per-example score).
    per_example_key: str | None = None


_CLASSIFICATION = [
    MetricSpec("accuracy", "classification", ("accuracy",), CLASSIFICATION_TASKS),
    MetricSpec("f1", "classification", ("f1_score",), CLASSIFICATION_TASKS),
    MetricSpec("precision", "classification", ("precision",), CLASSIFICATION_TASKS),
    MetricSpec("recall", "classification", ("recall",), CLASSIFICATION_TASKS),
]
_GENERATIVE = [
    MetricSpec("perplexity", "perplexity", ("perplexity",), GENERATIVE_TASKS, False, "perplexity"),
    MetricSpec("bleu", "bleu", ("bleu",), GENERATIVE_TASKS, True, "bleu"),
    MetricSpec(
        "rouge", "rouge", ("rouge1", "rouge2", "rougeL", "rougeLsum"), GENERATIVE_TASKS, True, "rougeL"
    ),
    MetricSpec("exact_match", "squad", ("exact_match",), GENERATIVE_TASKS, True, "exact_match"),
    MetricSpec("f1", "squad", ("f1_score",), GENERATIVE_TASKS, True, "f1_score"),
    MetricSpec(
        "bertscore",
        "bertscore",
        ("bertscore_precision", "bertscore_recall", "bertscore_f1"),
        GENERATIVE_TASKS,
        True,
        "bertscore_f1",
    ),
]
ALL_METRIC_NAMES = sorted({m.name for m in _CLASSIFICATION + _GENERATIVE})
DEFAULT_METRICS = {
    "classification": ["accuracy", "f1", "precision", "recall"],
    "chat": ["perplexity", "bleu", "rouge"],
    "instruction": ["perplexity", "bleu", "rouge"],
    "completion": ["perplexity", "bleu", "rouge"],
}
# Result keys where lower is better (for deltas' colour, thresholds' defaults, worst-first ordering).
LOWER_IS_BETTER = frozenset({"perplexity", "mean_nll"})


def metrics_for_task(task_type: str) -> dict[str, MetricSpec]:
    pool = _CLASSIFICATION if task_type in CLASSIFICATION_TASKS else _GENERATIVE
    return {m.name: m for m in pool}


def resolve_metrics(task_type: str, requested: list[str] | None) -> list[MetricSpec]:
    """The specs for a request; ValueError naming the first unknown or unfitting metric."""
    if task_type not in DEFAULT_METRICS:
        raise ValueError(f"task_type: unknown {task_type!r}; choose one of {', '.join(DEFAULT_METRICS)}")
    names = list(dict.fromkeys(requested or DEFAULT_METRICS[task_type]))
    available = metrics_for_task(task_type)
    for name in names:
        if name not in ALL_METRIC_NAMES:
            raise ValueError(f"metrics: unknown metric {name!r}; choose from {', '.join(ALL_METRIC_NAMES)}")
        if name not in available:
            raise ValueError(
                f"metrics: {name!r} does not fit a {task_type} dataset; "
                f"for {task_type} use {', '.join(sorted(available))}"
            )
    return [available[name] for name in names]


@functools.cache
def load_metric(module: str) -> Any:
    """Load one of the project's metric modules (an evaluate.EvaluationModule) from its local folder
    (works offline). Imported here so that the platform can read this registry without torch."""
    import evaluate

    return evaluate.load(str(METRICS_DIR / module))


def compute(module: str, **inputs: Any) -> dict[str, Any]:
    return load_metric(module).compute(**inputs)
