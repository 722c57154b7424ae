"""Evaluation services: check a request, create the Evaluation row, enqueue it; and, on the worker,
run the engine (experiments.training.evaluation) and store what it returns.

Unlike training, the evaluation worker uses the database directly (simplest design: it writes its
results through these services). Its queue is settings.EVAL_QUEUE, by default the training queue, so
the embedded worker runs it.
"""

from __future__ import annotations

import logging
import math
from pathlib import Path
from typing import Any

from django.conf import settings
from django.db import transaction

from datasets_app.models import DatasetVersion
from datasets_app.selectors import dataset_version_get
from experiments.model_refs import base_model_resolve, model_resolve
from experiments.models import Evaluation, EvaluationKind, EvaluationStatus, TrainingJob
from experiments.training.evaluation.metrics import resolve_metrics
from experiments.training.evaluation.thresholds import DEFAULT_THRESHOLDS, check_thresholds, parse_thresholds
from t4dm_site import finetune_config
from t4dm_site.errors import InvalidInput
from t4dm_site.events import EvaluationFinished, EvaluationProgressed, publish

log = logging.getLogger(__name__)
MAX_TEST_CASES = 1000


def eval_queue() -> str:
    return getattr(settings, "EVAL_QUEUE", None) or settings.CELERY_TASK_DEFAULT_QUEUE


def project_thresholds() -> dict[str, dict[str, float]]:
    """Project defaults: settings.QUALITY_THRESHOLDS (env T4DM_QUALITY_THRESHOLDS), else the seed's."""
    configured = getattr(settings, "QUALITY_THRESHOLDS", None)
    return parse_thresholds(DEFAULT_THRESHOLDS if configured is None else configured)


def _test_version(*, user, dataset_id: str | None, fallback: DatasetVersion | None) -> DatasetVersion:
    if dataset_id:
        name, _, number = dataset_id.partition("@v")
        return dataset_version_get(
            user=user, dataset_id=name, number=int(number) if number.isdigit() else None
        )
    if fallback is None:
        raise InvalidInput(
            "test_dataset: required (a dataset id such as ds-001) when the model is not a job's"
        )
    return fallback


def _split_file(version: DatasetVersion, split: str) -> Path:
    info = (version.splits or {}).get(split)
    if not info:
        raise InvalidInput(
            f"test_dataset: {version.dataset.public_id} v{version.number} has no {split!r} split; "
            f"choose one of {', '.join(sorted(version.splits or {}))}"
        )
    if not info.get("rows"):
        raise InvalidInput(
            f"test_dataset: the {split} split of {version.dataset.public_id} v{version.number} is empty; "
            "prepare the dataset with a test fraction above 0",
            code="empty_test_set",
        )
    return Path(version.path) / info["file"]


def default_metrics(task_type: str) -> list[str] | None:
    """The finetune configuration file's evaluation.metrics that fit this task type, then the task
    type's standard set (the seed's list mixes classification and generative metrics)."""
    from experiments.training.evaluation.metrics import DEFAULT_METRICS, metrics_for_task

    if task_type not in DEFAULT_METRICS:
        return None
    fitting = metrics_for_task(task_type)
    configured = [m for m in finetune_config.effective().values["evaluation"]["metrics"] if m in fitting]
    return list(dict.fromkeys([*configured, *DEFAULT_METRICS[task_type]]))


def _validator_outputs(evaluation: Evaluation, result: dict[str, Any]) -> None:
    """The validator hook (T4DM_VALIDATOR_HOOK / T4DM_VALIDATOR_URL), if configured, judges the sample
    outputs; its verdicts (or its error) go into details["validator"]."""
    from experiments.integrations.validator import outputs_validate

    report = outputs_validate(evaluation=evaluation, sample_outputs=result.get("sample_outputs") or [])
    if report is not None:
        result.setdefault("details", {})["validator"] = report


def _check_metrics(task_type: str, metrics: list[str] | None) -> list[str]:
    metrics = metrics or default_metrics(task_type)
    try:
        return [spec.name for spec in resolve_metrics(task_type, metrics)]
    except ValueError as exc:
        raise InvalidInput(str(exc), code="invalid_metric") from None


def _thresholds(thresholds: dict | None) -> dict:
    """The project's thresholds with the request's added: the strictest bound per metric and operator
    applies, so a request can tighten the project's rule but never loosen it (as at the gate)."""
    try:
        project, requested = project_thresholds(), parse_thresholds(thresholds or {})
    except ValueError as exc:
        raise InvalidInput(str(exc), code="invalid_thresholds") from None
    merged = {metric: dict(rule) for metric, rule in project.items()}
    for metric, rule in requested.items():
        current = merged.setdefault(metric, {})
        for op, bound in rule.items():
            stricter = max if op in (">=", ">") else min
            current[op] = stricter(current[op], bound) if op in current else bound
    return merged


def _positive(name: str, value: int | None) -> None:
    if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
        raise InvalidInput(f"{name}: must be a positive integer, got {value!r}")


@transaction.atomic
def evaluation_start(
    *,
    owner,
    model_path: str | None = None,
    job: TrainingJob | None = None,
    test_dataset: str | None = None,
    split: str = "test",
    metrics: list[str] | None = None,
    base_model: str | None = None,
    compare_to_base: bool = True,
    max_samples: int | None = None,
    thresholds: dict | None = None,
) -> Evaluation:
    """evaluate_model: queue an evaluation of a job's final model, a checkpoint, a registered version
    or a model folder on a dataset split; a worker runs it (see evaluation_run)."""
    if job is not None and not model_path:
        model_path = job.public_id
    ref = model_resolve(user=owner, ref=model_path or "")
    version = _test_version(user=owner, dataset_id=test_dataset, fallback=ref.dataset_version)
    task_type = version.task_type
    if ref.task_type and ref.task_type != task_type:
        raise InvalidInput(
            f"test_dataset: {version.dataset.public_id} is a {task_type} dataset but the model was trained for {ref.task_type}"
        )
    test_file = _split_file(version, split)
    names = _check_metrics(task_type, metrics)
    base = (
        base_model_resolve(user=owner, name=base_model, field="base_model") if base_model else ref.base_model
    )
    _positive("max_samples", max_samples)
    if max_samples is None:  # the finetune configuration file's evaluation.test_samples
        max_samples = finetune_config.effective().values["evaluation"]["test_samples"]
    params = {
        "test_file": str(test_file),
        "labels_from": _labels_file(version),
        "compare_to_base": compare_to_base,
        "max_samples": max_samples,
        "names": _public_names([(ref, model_path or "")], base=base, base_name=base_model),
    }
    evaluation = Evaluation.objects.create(
        owner=owner,
        kind=EvaluationKind.EVALUATE,
        model_path=ref.path,
        job=ref.job,
        checkpoint=ref.checkpoint,
        dataset_version=version,
        split=split,
        task_type=task_type,
        base_model=base or "",
        requested_metrics=names,
        params=params,
        thresholds=_thresholds(thresholds),
    )
    _enqueue_on_commit(evaluation)
    return evaluation


def _labels_file(version: DatasetVersion) -> str | None:
    """Classification label names come from the training split (the model's label order)."""
    train = (version.splits or {}).get("train")
    return str(Path(version.path) / train["file"]) if train and train.get("rows") else None


@transaction.atomic
def compare_models_start(
    *,
    owner,
    models: list[str],
    test_cases: list[dict] | None = None,
    test_dataset: str | None = None,
    task_type: str | None = None,
    metrics: list[str] | None = None,
    max_samples: int | None = None,
) -> Evaluation:
    """compare_models: each model's output and scores per test case, plus aggregates."""
    if len(models) < 2:
        raise InvalidInput("models: give at least two models to compare")
    refs = [model_resolve(user=owner, ref=m, field="models") for m in models]
    _positive("max_samples", max_samples)
    version = None
    if test_cases:
        if len(test_cases) > MAX_TEST_CASES:
            raise InvalidInput(f"test_cases: at most {MAX_TEST_CASES} cases per comparison")
        task_type = task_type or next((r.task_type for r in refs if r.task_type), None)
        if not task_type:
            raise InvalidInput("task_type: required with inline test_cases when no model is a job's")
    else:
        fallback = next((r.dataset_version for r in refs if r.dataset_version), None)
        version = _test_version(user=owner, dataset_id=test_dataset, fallback=fallback)
        task_type = version.task_type
        _split_file(version, "test")
    if test_cases is not None and not test_cases and version is None:
        raise InvalidInput("test_cases: empty; give at least one case", code="empty_test_set")
    names = _check_metrics(task_type, metrics)
    base = next((r.base_model for r in refs if r.base_model), None)
    evaluation = Evaluation.objects.create(
        owner=owner,
        kind=EvaluationKind.COMPARE_MODELS,
        model_path=refs[0].path,
        job=refs[0].job,
        dataset_version=version,
        task_type=task_type,
        base_model=base or "",
        requested_metrics=names,
        params={
            "models": [r.path for r in refs],
            "model_refs": list(models),
            "names": _public_names(list(zip(refs, models, strict=True))),
            "test_cases": test_cases or None,
            "test_file": str(_split_file(version, "test")) if version else None,
            "labels_from": _labels_file(version) if version else None,
            "max_samples": max_samples,
        },
    )
    _enqueue_on_commit(evaluation)
    return evaluation


@transaction.atomic
def compare_versions_start(
    *,
    owner,
    version_a: str,
    version_b: str,
    test_dataset: str | None = None,
    metrics: list[str] | None = None,
    resamples: int = 1000,
    max_samples: int | None = None,
) -> Evaluation:
    """compare_versions: metric deltas (B − A) with paired bootstrap CIs, per-example wins/losses/ties."""
    a = model_resolve(user=owner, ref=version_a, field="version_a")
    b = model_resolve(user=owner, ref=version_b, field="version_b")
    version = _test_version(
        user=owner, dataset_id=test_dataset, fallback=b.dataset_version or a.dataset_version
    )
    test_file = _split_file(version, "test")
    names = _check_metrics(version.task_type, metrics)
    _positive("max_samples", max_samples)
    if isinstance(resamples, bool) or not isinstance(resamples, int) or not 100 <= resamples <= 10000:
        raise InvalidInput(f"resamples: must be an integer between 100 and 10000, got {resamples!r}")
    evaluation = Evaluation.objects.create(
        owner=owner,
        kind=EvaluationKind.COMPARE_VERSIONS,
        model_path=b.path,
        job=b.job,
        dataset_version=version,
        task_type=version.task_type,
        base_model=a.path,
        requested_metrics=names,
        params={
            "version_a": version_a,
            "version_b": version_b,
            "model_a": a.path,
            "model_b": b.path,
            "names": _public_names([(a, version_a), (b, version_b)]),
            "base_model": b.base_model or a.base_model,
            "test_file": str(test_file),
            "labels_from": _labels_file(version),
            "resamples": resamples,
            "max_samples": max_samples,
        },
    )
    _enqueue_on_commit(evaluation)
    return evaluation


def _public_names(
    pairs: list[tuple[Any, str]], *, base: str | None = None, base_name: str | None = None
) -> dict:
    """Server path → the name the caller sent (a job id, version ref, model name), for every model
    an evaluation loads: responses show names, never server paths (selectors.public_names)."""
    names: dict[str, str] = {}
    for ref, name in pairs:
        names.setdefault(ref.path, name.strip())
        config = getattr(ref.job, "config", None)
        if ref.base_model and config is not None and config.model_base:
            names.setdefault(ref.base_model, config.model_base)
    if base and base_name:
        names[base] = base_name.strip()
    return {path: name for path, name in names.items() if path and name and path != name}


def _named_comparison(result: dict[str, Any], names: list[str]) -> dict[str, Any]:
    """compare_models' result keyed by the names the caller sent, in their order (the engine keys it
    by the paths it loaded; two names may point at one path)."""
    paths = list(result["models"])
    for case in result["cases"]:
        for output, name in zip(case["outputs"], names, strict=True):
            output["model"] = name
    result["aggregates"] = {name: result["aggregates"][path] for name, path in zip(names, paths, strict=True)}
    result["best"] = {key: names[paths.index(path)] for key, path in result["best"].items()}
    result["models"] = list(names)
    return result


def _enqueue_on_commit(evaluation: Evaluation) -> None:
    from experiments.evaluation.tasks import evaluate_task

    pk, queue = evaluation.pk, eval_queue()
    transaction.on_commit(lambda: evaluate_task.apply_async((pk,), queue=queue))


# --- the worker side ----------------------------------------------------------------------------------


def _progress_writer(evaluation: Evaluation):
    def report(fraction: float, message: str) -> None:
        evaluation.record_progress(fraction=fraction, message=message)
        # The evaluation page's outbox and its websockets: subscribers (t4dm_site.events.SUBSCRIBERS).
        publish(EvaluationProgressed(evaluation_pk=evaluation.pk, status=evaluation.status))

    return report


def evaluation_run(*, evaluation: Evaluation) -> Evaluation:
    """Run a queued evaluation with the engine and store its result (called by the Celery task).

    Not one transaction: progress must be visible while it runs. A failure is stored on the row with
    the engine's message; it is not retried (the same inputs would fail the same way).
    """
    # The engine (torch, transformers) is imported on the worker only, not by the web process.
    from experiments.training import evaluation as engine
    from experiments.training.data import classification_labels, load_split

    if evaluation.status in (EvaluationStatus.SUCCEEDED, EvaluationStatus.FAILED):
        return evaluation  # a redelivered message for a finished evaluation
    evaluation.mark_running()
    publish(EvaluationProgressed(evaluation_pk=evaluation.pk, status=evaluation.status))
    params = evaluation.params or {}
    progress = _progress_writer(evaluation)
    try:
        if evaluation.kind == EvaluationKind.EVALUATE:
            result = engine.evaluate_model(
                model_path=evaluation.model_path,
                test_file=params["test_file"],
                task_type=evaluation.task_type,
                metrics=evaluation.requested_metrics,
                base_model=evaluation.base_model or None,
                labels_from=params.get("labels_from"),
                compare_to_base=params.get("compare_to_base", True),
                max_samples=params.get("max_samples"),
                progress=progress,
            )
            _store_evaluation(evaluation, result)
        elif evaluation.kind == EvaluationKind.COMPARE_MODELS:
            cases = params.get("test_cases")
            if not cases:
                cases = engine.read_test_rows(params["test_file"], max_samples=params.get("max_samples"))
            labels = None
            if evaluation.task_type == "classification" and params.get("labels_from"):
                labels = classification_labels(load_split(params["labels_from"]))
            result = engine.compare_models(
                models=params["models"],
                test_cases=cases,
                task_type=evaluation.task_type,
                metrics=evaluation.requested_metrics,
                labels=labels,
                base_model=evaluation.base_model or None,
                progress=progress,
            )
            result = _named_comparison(result, params.get("model_refs") or result["models"])
            evaluation.comparison = _json_safe(result)
        else:
            result = engine.compare_versions(
                model_a=params["model_a"],
                model_b=params["model_b"],
                test_file=params["test_file"],
                task_type=evaluation.task_type,
                metrics=evaluation.requested_metrics,
                labels_from=params.get("labels_from"),
                base_model=params.get("base_model"),
                max_samples=params.get("max_samples"),
                resamples=params.get("resamples", 1000),
                progress=progress,
            )
            result["version_a"], result["version_b"] = params["version_a"], params["version_b"]
            evaluation.comparison = _json_safe(result)
            evaluation.metrics = {key: entry["b"] for key, entry in result["metrics"].items()}
    except Exception as exc:
        log.exception("evaluation %s failed", evaluation.public_id)
        evaluation.mark_failed(
            error=f"{type(exc).__name__}: {exc}" if not isinstance(exc, ValueError) else str(exc)
        )
        publish(EvaluationFinished(evaluation_pk=evaluation.pk, status=evaluation.status))
        return evaluation
    evaluation.mark_succeeded()
    # Webhooks and a waiting workflow's evaluate step: subscribers (t4dm_site.events.SUBSCRIBERS).
    publish(EvaluationFinished(evaluation_pk=evaluation.pk, status=evaluation.status))
    return evaluation


def _store_evaluation(evaluation: Evaluation, result: dict[str, Any]) -> None:
    _validator_outputs(evaluation, result)
    evaluation.metrics = result["metrics"]
    evaluation.base_metrics = result["base_metrics"]
    evaluation.comparison_to_base = result["comparison_to_base"]
    evaluation.sample_outputs = result["sample_outputs"]
    evaluation.details = _json_safe(result["details"])
    evaluation.examples = _json_safe(result["examples"])
    if result.get("base_model"):
        evaluation.base_model = result["base_model"]
    checked = check_thresholds(result["metrics"], evaluation.thresholds or {})
    # Only the thresholds that apply (a classification run has no perplexity): the registry's gate
    # reads this list, and a skipped check is neither a pass nor a failure.
    evaluation.threshold_results = [
        {**c, "passed": c["status"] == "passed"} for c in checked["checks"] if c["status"] != "skipped"
    ]
    evaluation.details["thresholds_skipped"] = [
        c["metric"] for c in checked["checks"] if c["status"] == "skipped"
    ]


def _json_safe(value: Any) -> Any:
    """NaN/inf are not JSON: store them as null."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {str(k): _json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_json_safe(v) for v in value]
    return value
