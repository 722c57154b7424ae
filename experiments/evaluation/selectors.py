"""Read side of evaluations: visibility, the seed's EvaluationResult shape, the per-example browser."""

from __future__ import annotations

from typing import Any

from django.db.models import QuerySet

from experiments.models import Evaluation, EvaluationKind
from experiments.training.evaluation.metrics import LOWER_IS_BETTER
from t4dm_site.access import get_visible, visible
from t4dm_site.errors import InvalidInput

EXAMPLE_FILTERS = ("all", "incorrect", "correct", "worse_than_base", "better_than_base")


def _evaluations() -> QuerySet[Evaluation]:
    return Evaluation.objects.select_related("job", "checkpoint", "dataset_version__dataset")


def evaluations_visible_to(user) -> QuerySet[Evaluation]:
    return visible(_evaluations(), user)


def evaluation_get(*, user, evaluation_id: str) -> Evaluation:
    return get_visible(_evaluations(), user, evaluation_id, "evaluation", prefix="eval")


def evaluation_to_dict(evaluation: Evaluation) -> dict[str, Any]:
    """The seed's EvaluationResult (model_path, evaluation_id, metrics, comparison_to_base,
    sample_outputs) plus status/progress, lineage, thresholds, and for comparisons their result."""
    version = evaluation.dataset_version
    data: dict[str, Any] = {
        "model_path": evaluation.model_path,
        "evaluation_id": evaluation.public_id,
        "kind": evaluation.kind,
        "status": evaluation.status,
        "progress": evaluation.progress,
        "progress_message": evaluation.progress_message,
        "metrics": evaluation.metrics,
        "comparison_to_base": evaluation.comparison_to_base,
        "sample_outputs": evaluation.sample_outputs,
        "base_model": evaluation.base_model,
        "base_metrics": evaluation.base_metrics,
        "task_type": evaluation.task_type,
        "requested_metrics": evaluation.requested_metrics,
        "job_id": evaluation.job.public_id if evaluation.job else None,
        "checkpoint_step": evaluation.checkpoint.step if evaluation.checkpoint else None,
        "test_dataset": f"{version.dataset.public_id}@v{version.number}" if version else None,
        "split": evaluation.split,
        "thresholds": evaluation.thresholds,
        "threshold_results": evaluation.threshold_results,
        "thresholds_passed": evaluation.thresholds_passed,
        "details": evaluation.details,
        "error": evaluation.error,
        "created_at": evaluation.created_at.isoformat(),
        "finished_at": evaluation.finished_at.isoformat() if evaluation.finished_at else None,
    }
    if evaluation.kind != EvaluationKind.EVALUATE:
        data["comparison"] = evaluation.comparison
    return data


def default_sort_key(evaluation: Evaluation) -> str | None:
    if evaluation.task_type == "classification":
        return "correct"
    keys = [k for k in ("perplexity", "rougeL", "f1_score", "bleu", "exact_match") if k in evaluation.metrics]
    return keys[0] if keys else None


def example_score_keys(evaluation: Evaluation) -> list[str]:
    keys: dict[str, None] = {}
    for example in evaluation.examples[:50]:
        keys.update(dict.fromkeys(example.get("scores", {})))
    return list(keys)


def _badness(example: dict, key: str, classification: bool) -> tuple:
    """Sort key for worst first."""
    if classification:
        correct = example["scores"].get("correct", 0.0)
        confidence = example.get("confidence") or 0.0
        # Confidently wrong first, then hesitant wrong, then hesitant right.
        return (correct, -confidence if not correct else confidence)
    value = example.get("scores", {}).get(key)
    if value is None:
        return (1, 0.0)
    return (0, -value if key in LOWER_IS_BETTER else value)


def _versus_base(example: dict, key: str) -> float | None:
    mine, base = example.get("scores", {}).get(key), (example.get("base_scores") or {}).get(key)
    if mine is None or base is None:
        return None
    return (base - mine) if key in LOWER_IS_BETTER else (mine - base)


def evaluation_examples(
    *,
    evaluation: Evaluation,
    sort: str | None = None,
    order: str = "worst",
    only: str = "all",
    query: str = "",
    offset: int = 0,
    limit: int = 50,
) -> dict[str, Any]:
    """Per-example records, worst first by default, with filters; for the page and the API."""
    if only not in EXAMPLE_FILTERS:
        raise InvalidInput(f"only: unknown filter {only!r}; choose one of {', '.join(EXAMPLE_FILTERS)}")
    if order not in ("worst", "best", "index"):
        raise InvalidInput(f"order: unknown {order!r}; choose worst, best or index")
    classification = evaluation.task_type == "classification"
    keys = example_score_keys(evaluation)
    key = sort or default_sort_key(evaluation)
    if key is not None and keys and key not in keys:
        raise InvalidInput(f"sort: {key!r} is not a per-example score here; choose one of {', '.join(keys)}")
    rows = list(evaluation.examples)
    if only in ("incorrect", "correct"):
        want = 1.0 if only == "correct" else 0.0
        rows = [
            r
            for r in rows
            if r.get("scores", {}).get("correct", r.get("scores", {}).get("exact_match")) == want
        ]
    elif only in ("worse_than_base", "better_than_base") and key:
        sign = -1 if only == "worse_than_base" else 1
        rows = [r for r in rows if (d := _versus_base(r, key)) is not None and sign * d > 0]
    if query:
        needle = query.lower()
        rows = [
            r
            for r in rows
            if any(needle in str(r.get(f) or "").lower() for f in ("prompt", "reference", "generated"))
        ]
    if order != "index" and key:
        rows.sort(key=lambda r: _badness(r, key, classification), reverse=(order == "best"))
    total = len(rows)
    return {
        "evaluation_id": evaluation.public_id,
        "sort": key,
        "order": order,
        "only": only,
        "score_keys": keys,
        "total": total,
        "offset": offset,
        "examples": rows[offset : offset + limit],
    }
