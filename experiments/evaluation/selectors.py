"""Read side of evaluations: visibility, the seed's EvaluationResult shape, the per-example browser."""

from __future__ import annotations

import re
from pathlib import Path
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
    # Every result is keyed and labelled by the name the caller sent (job id, version ref, model
    # name); the server paths the worker loaded never leave the server.
    return named(data, public_names(evaluation), _server_path_pattern())


def public_names(evaluation: Evaluation) -> dict[str, str]:
    """Server path → the name a caller knows it by: what the request sent (params["names"], and for
    comparisons stored before it, their paths → the refs sent), the job or checkpoint the
    evaluation is linked to, the built-in models by name."""
    from experiments.model_refs import builtin_models

    params = evaluation.params or {}
    names: dict[str, str] = {str(path): name for name, path in builtin_models().items()}
    if evaluation.job is not None:
        job_name = evaluation.job.public_id
        if evaluation.checkpoint is not None:
            job_name = f"{job_name}/step-{evaluation.checkpoint.step}"
        names.setdefault(evaluation.model_path, job_name)
    for path, name in zip(params.get("models") or [], params.get("model_refs") or [], strict=False):
        names[str(path)] = str(name)
    for side in ("a", "b"):  # compare_versions
        if params.get(f"model_{side}") and params.get(f"version_{side}"):
            names[str(params[f"model_{side}"])] = str(params[f"version_{side}"])
    names.update({str(k): str(v) for k, v in (params.get("names") or {}).items()})
    return {path: name for path, name in names.items() if path and path != name}


def named(value: Any, names: dict[str, str], pattern: re.Pattern | None = None) -> Any:
    """``value`` (JSON-like) with every server path in ``names`` replaced by its name, in keys, values
    and inside messages; any other absolute path under the server's data folders by its last part."""
    if isinstance(value, dict):
        return {named(k, names, pattern): named(v, names, pattern) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [named(v, names, pattern) for v in value]
    if not isinstance(value, str) or not value:
        return value
    if value in names:
        return names[value]
    # Longest first: a checkpoint folder inside a job folder is replaced whole.
    for path in sorted(names, key=len, reverse=True):
        if path in value:
            value = value.replace(path, names[path])
    return pattern.sub(lambda m: Path(m.group(0)).name, value) if pattern else value


def _server_path_pattern() -> re.Pattern | None:
    from django.conf import settings

    roots = {
        str(Path(getattr(settings, key)).resolve())
        for key in ("DATA_DIR", "ARTIFACT_ROOT", "TINY_MODEL_DIR", "IMPORT_ROOT")
        if getattr(settings, key, None)
    }
    if not roots:
        return None
    alternatives = "|".join(re.escape(r) for r in sorted(roots, key=len, reverse=True))
    return re.compile(rf"(?:{alternatives})(?:/[^\s'\",:;)\]]*)?")


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
