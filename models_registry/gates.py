"""The deployment gate: the seed's Quality Checklist, each item computed from the records.

`gate_check(version=..., thresholds=...)` returns the seven items in checklist order, each
`{"key", "label", "passed", "detail"}`. A promotion to production is refused while any item fails.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from datasets_app.models import ValidationStatus
from experiments.models import Evaluation, EvaluationStatus, JobStatus

SEMVER = re.compile(r"^(0|[1-9]\d*)\.(0|[1-9]\d*)\.(0|[1-9]\d*)$")
# Metrics where a smaller number is better; every other metric is better when larger.
LOWER_IS_BETTER = ("perplexity", "loss", "error", "wer", "cer")

ITEMS = (
    ("dataset_validated", "Dataset properly validated"),
    ("training_completed", "Training completed without errors"),
    ("metrics_meet_thresholds", "Evaluation metrics meet thresholds"),
    ("comparison_to_base_favourable", "Comparison to base model favourable"),
    ("sample_outputs_reviewed", "Sample outputs reviewed"),
    ("properly_versioned", "Model properly versioned"),
    ("model_card_present", "Documentation (model card) updated"),
)
LABELS = dict(ITEMS)


def lower_is_better(metric: str) -> bool:
    return any(word in metric.lower() for word in LOWER_IS_BETTER)


def version_evaluation(version) -> Evaluation | None:
    """The version's evaluation when it finished, else the newest finished evaluation of its job."""
    if version.evaluation_id and version.evaluation.status == EvaluationStatus.SUCCEEDED:
        return version.evaluation
    if version.job_id is None:
        return None
    evaluations = version.job.evaluations.filter(status=EvaluationStatus.SUCCEEDED)
    if any(field.name == "kind" for field in Evaluation._meta.get_fields()):
        evaluations = evaluations.filter(kind="evaluate")  # compare_* runs are evaluations too
    return evaluations.order_by("-created_at").first()


def _item(key: str, passed: bool, detail: str) -> dict[str, Any]:
    return {"key": key, "label": LABELS[key], "passed": bool(passed), "detail": detail}


def _dataset_validated(version) -> dict:
    dv = version.dataset_version
    if dv is None:
        return _item("dataset_validated", False, "the version has no dataset version in its lineage")
    name = f"{dv.dataset.public_id} v{dv.number}"
    if dv.validation_status == ValidationStatus.FAILED:
        return _item("dataset_validated", False, f"{name} failed validation")
    if dv.validation_status not in (ValidationStatus.PASSED, ValidationStatus.WARNING):
        return _item("dataset_validated", False, f"{name} has not been validated")
    return _item("dataset_validated", True, f"{name} validation {dv.validation_status}")


def _training_completed(version) -> dict:
    job = version.job
    if job is None:
        return _item("training_completed", False, "the version has no training job in its lineage")
    if job.status != JobStatus.SUCCEEDED or job.error:
        return _item(
            "training_completed",
            False,
            f"{job.public_id} is {job.status}{': ' + job.error if job.error else ''}",
        )
    if not version.artifact_path or not Path(version.artifact_path).exists():
        return _item(
            "training_completed", False, f"the trained model folder {version.artifact_path!r} is missing"
        )
    return _item("training_completed", True, f"{job.public_id} succeeded")


def _describe(entry: dict) -> str:
    value, op, bound = entry.get("value"), entry.get("op"), entry.get("threshold")
    if isinstance(value, int | float) and op and bound is not None:
        return f"{entry['metric']}={value:g} (needs {op} {bound:g})"
    return (
        f"{entry.get('metric', '?')} (not measured; needs {op} {bound:g})"
        if op
        else f"{entry.get('metric', '?')} (not measured)"
    )


def _parse(thresholds: Any, source: str) -> dict[str, dict[str, float]]:
    from experiments.training.evaluation.thresholds import parse_thresholds

    try:
        return parse_thresholds(thresholds)
    except ValueError as exc:
        from t4dm_site.errors import InvalidInput

        raise InvalidInput(f"{source} {exc}", code="invalid_thresholds") from None


def project_thresholds() -> dict[str, dict[str, float]]:
    """The evaluation app's project thresholds (settings.QUALITY_THRESHOLDS, else the engine's defaults);
    a misconfigured value is a 400 `invalid_thresholds` here, like the other sources. Read here from
    settings, not through experiments.evaluation.services: the registry sits below the evaluation
    app (the evaluation app's compare_to_base reads the registry), so it never imports it back."""
    from django.conf import settings

    from experiments.training.evaluation.thresholds import DEFAULT_THRESHOLDS, parse_thresholds

    configured = getattr(settings, "QUALITY_THRESHOLDS", None)
    try:
        return parse_thresholds(DEFAULT_THRESHOLDS if configured is None else configured)
    except ValueError as exc:
        from t4dm_site.errors import InvalidInput

        raise InvalidInput(f"project {exc}", code="invalid_thresholds") from None


def _task_metrics(evaluation: Evaluation, version) -> set[str] | None:
    """The metrics the evaluation's task type can measure (None when the task type is unknown)."""
    from experiments.training.evaluation.metrics import DEFAULT_METRICS, metrics_for_task

    task_type = evaluation.task_type or (version.config.task_type if version.config else "")
    return set(metrics_for_task(task_type)) if task_type in DEFAULT_METRICS else None


def threshold_sources(
    *, version, evaluation: Evaluation, thresholds: dict | None, model_thresholds: dict | None
):
    """(source, parsed thresholds, must_measure) for every source that applies. Every check of every
    source must pass, so the strictest bound on each metric decides and no source can loosen another:
    the project's (T4DM_QUALITY_THRESHOLDS), the evaluation's own (as given when it was started; only
    ever an extra check), the model's and the request's. A project or evaluation threshold on a metric
    the task cannot measure (accuracy of a chat model) does not apply; a model or request threshold on a
    metric the evaluation did not measure fails."""
    sources = [("project", project_thresholds(), False)]
    if evaluation.thresholds:
        sources.append(("evaluation", _parse(evaluation.thresholds, "evaluation"), False))
    if model_thresholds:
        sources.append(("model", _parse(model_thresholds, "model"), True))
    if thresholds:
        sources.append(("request", _parse(thresholds, "request"), True))
    return sources


def _metrics_meet_thresholds(
    version, evaluation: Evaluation | None, thresholds: dict | None, model_thresholds: dict | None
) -> dict:
    """Checked now against the evaluation's metrics; its stored threshold results are not read."""
    from experiments.training.evaluation.thresholds import check_thresholds

    key = "metrics_meet_thresholds"
    if evaluation is None:
        return _item(key, False, "no finished evaluation of this version")
    metrics = evaluation.metrics or {}
    measurable = _task_metrics(evaluation, version)
    failing: list[str] = []
    total = 0
    for source, parsed, must_measure in threshold_sources(
        version=version, evaluation=evaluation, thresholds=thresholds, model_thresholds=model_thresholds
    ):
        for check in check_thresholds(metrics, parsed)["checks"]:
            if check["status"] == "skipped" and not must_measure:
                if measurable is not None and check["metric"] not in measurable:
                    continue  # the task cannot measure it: the project's rule is for other tasks
            total += 1
            if check["status"] != "passed":
                failing.append(f"{_describe(check)} [{source}]")
    if total == 0:
        return _item(key, False, f"{evaluation.public_id} has no thresholds to check against")
    if failing:
        return _item(
            key, False, f"{evaluation.public_id}: below threshold: {', '.join(dict.fromkeys(failing))}"
        )
    return _item(key, True, f"{evaluation.public_id}: {total} threshold(s) met")


def _as_float(value: Any) -> float | None:
    try:
        return float(value)
    except (TypeError, ValueError):
        return None


def _comparison_favourable(evaluation: Evaluation | None) -> dict:
    """Favourable: no metric worse than the base, and at least one better."""
    key = "comparison_to_base_favourable"
    comparison = (evaluation.comparison_to_base or {}) if evaluation else {}
    deltas = {
        name.removesuffix("_delta"): _as_float(value)
        for name, value in comparison.items()
        if name.endswith("_delta") and _as_float(value) is not None
    }
    if not deltas:
        return _item(key, False, "no comparison to the base model was run")
    worse = [m for m, d in deltas.items() if (d > 0 if lower_is_better(m) else d < 0)]
    better = [m for m, d in deltas.items() if (d < 0 if lower_is_better(m) else d > 0)]
    shown = ", ".join(f"{m} {d:+g}" for m, d in deltas.items())
    if worse:
        return _item(key, False, f"worse than base on {', '.join(worse)} ({shown})")
    if not better:
        return _item(key, False, f"no better than base ({shown})")
    return _item(key, True, shown)


def _human_eval_passed(version) -> str | None:
    """A passed human evaluation of this version's job, where the human-eval models exist."""
    from django.apps import apps

    try:
        task_model = apps.get_model("experiments", "HumanEvalTask")
    except LookupError:
        return None
    fields = {f.name for f in task_model._meta.get_fields()}
    if not {"job", "status"} <= fields or version.job_id is None:
        return None
    task = task_model.objects.filter(job_id=version.job_id, status="passed").first()
    return f"human evaluation {getattr(task, 'public_id', task.pk)} passed" if task else None


def _sample_outputs_reviewed(version) -> dict:
    key = "sample_outputs_reviewed"
    signoff = version.signoffs.order_by("-created_at").first()
    if signoff is not None:
        return _item(
            key, True, f"signed off by {signoff.reviewer_name} on {signoff.created_at:%Y-%m-%d %H:%M}"
        )
    human = _human_eval_passed(version)
    if human:
        return _item(key, True, human)
    return _item(key, False, "no sample-output sign-off and no passed human evaluation")


def _properly_versioned(version) -> dict:
    key = "properly_versioned"
    if not SEMVER.match(version.version):
        return _item(key, False, f"{version.version!r} is not a semver x.y.z")
    missing = [
        name for name in ("dataset_version", "config", "job") if getattr(version, f"{name}_id") is None
    ]
    if missing:
        return _item(key, False, f"lineage incomplete: no {', '.join(missing)}")
    return _item(key, True, f"{version.ref} with full lineage")


NOT_EVALUATED = "Not evaluated yet."


def _model_card_present(version, evaluation: Evaluation | None) -> dict:
    """Documentation updated: the card describes this version's evaluation, metric by metric."""
    key = "model_card_present"
    card = version.model_card or ""
    if len(card.strip()) < 40:
        return _item(key, False, "the model card is empty; generate or write one")
    if evaluation is None:
        return _item(key, False, "the model card documents no evaluation (the version has none yet)")
    if NOT_EVALUATED in card:
        return _item(key, False, f"the model card still says {NOT_EVALUATED!r}; regenerate it")
    missing = [name for name in (evaluation.metrics or {}) if name not in card]
    if evaluation.public_id not in card:
        return _item(key, False, f"the model card does not mention the evaluation {evaluation.public_id}")
    if missing:
        return _item(key, False, f"the model card lacks the evaluation's {', '.join(sorted(missing))}")
    return _item(key, True, f"model card documents {evaluation.public_id} ({len(card)} characters)")


def gate_check(
    *, version, thresholds: dict | None = None, model_thresholds: dict | None = None
) -> list[dict[str, Any]]:
    """`thresholds`: the request's; `model_thresholds`: the registered model's (read from the version's
    model when not given). Both add to the project's: the strictest applies."""
    evaluation = version_evaluation(version)
    if model_thresholds is None and getattr(version, "registered_id", None):
        model_thresholds = version.registered.thresholds or None
    return [
        _dataset_validated(version),
        _training_completed(version),
        _metrics_meet_thresholds(version, evaluation, thresholds, model_thresholds),
        _comparison_favourable(evaluation),
        _sample_outputs_reviewed(version),
        _properly_versioned(version),
        _model_card_present(version, evaluation),
    ]


def gate_failures(items: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [item for item in items if not item["passed"]]
