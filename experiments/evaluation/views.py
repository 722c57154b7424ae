"""The evaluation page: metrics against the base, thresholds, plots and a per-example browser."""

from __future__ import annotations

from django.contrib import messages
from django.http import Http404
from django.shortcuts import redirect, render

from experiments.evaluation import selectors, services
from experiments.models import EvaluationKind
from experiments.selectors import model_choices
from experiments.training.evaluation.metrics import DEFAULT_METRICS, LOWER_IS_BETTER, metrics_for_task
from t4dm_site.errors import DomainError, InvalidInput, NotFound
from t4dm_site.pages import dashboard


def _metric_rows(evaluation) -> list[dict]:
    rows = []
    for key, value in evaluation.metrics.items():
        if not isinstance(value, int | float):
            continue
        base = evaluation.base_metrics.get(key)
        delta = evaluation.comparison_to_base.get(f"{key}_delta")
        better = None
        if isinstance(base, int | float) and value != base:
            better = (value < base) if key in LOWER_IS_BETTER else (value > base)
        rows.append({"key": key, "value": value, "base": base, "delta": delta, "better": better})
    return rows


_KIND_LABELS = {
    EvaluationKind.EVALUATE: "Model evaluation",
    EvaluationKind.COMPARE_MODELS: "Model comparison",
    EvaluationKind.COMPARE_VERSIONS: "Version comparison",
}


def kind_label(evaluation) -> str:
    """What the evaluation is, in words (the API function's name is no label for a person)."""
    if evaluation.kind == EvaluationKind.EVALUATE and evaluation.checkpoint_id:
        return "Checkpoint evaluation"
    return _KIND_LABELS.get(evaluation.kind, evaluation.kind.replace("_", " ").capitalize())


def _model_versions(evaluation) -> list:
    try:
        from models_registry.models import ModelVersion
    except ImportError:
        return []
    return list(ModelVersion.objects.filter(evaluation=evaluation))


@dashboard
def evaluation_detail(request, evaluation_id: str):
    try:
        evaluation = selectors.evaluation_get(user=request.user, evaluation_id=evaluation_id)
    except NotFound as exc:
        raise Http404(str(exc)) from None
    data = selectors.evaluation_to_dict(evaluation)
    return render(
        request,
        "evaluations/detail.html",
        {
            "evaluation": evaluation,
            "kind_label": kind_label(evaluation),
            # The model as the caller named it (job-001/step-50, model_id@1.0.0), never a server path.
            "model_name": data["model_path"],
            "base_name": data["base_model"],
            # A comparison shows its own A/B table instead.
            "metric_rows": _metric_rows(evaluation) if evaluation.kind == EvaluationKind.EVALUATE else [],
            "is_comparison": evaluation.kind != EvaluationKind.EVALUATE,
            "score_keys": selectors.example_score_keys(evaluation),
            "default_sort": selectors.default_sort_key(evaluation),
            "model_versions": _model_versions(evaluation),
            "page_data": {
                "evaluation_id": evaluation.public_id,
                "status": evaluation.status,
                "task_type": evaluation.task_type,
                "kind": evaluation.kind,
                "details": data["details"],
                "comparison": evaluation.comparison if evaluation.kind != EvaluationKind.EVALUATE else None,
                "lower_is_better": sorted(LOWER_IS_BETTER),
                "histogram": _histogram_data(evaluation),
            },
        },
    )


def _histogram_data(evaluation) -> dict:
    """Per-example main score of the model and of the base, for the histogram."""
    key = selectors.default_sort_key(evaluation)
    if not key or evaluation.task_type == "classification":
        return {}
    mine = [e["scores"][key] for e in evaluation.examples if key in e.get("scores", {})]
    base = [e["base_scores"][key] for e in evaluation.examples if key in (e.get("base_scores") or {})]
    return {"key": key, "model": mine, "base": base}


@dashboard
def evaluation_list(request):
    evaluations = list(selectors.evaluations_visible_to(request.user).defer("examples")[:200])
    for e in evaluations:  # the model as the caller named it, never a server path
        e.model_name = selectors.public_names(e).get(e.model_path, e.model_path)
        e.kind_label = kind_label(e)
    return render(request, "evaluations/list.html", {"evaluations": evaluations})


SPLITS = ("test", "validation", "train")


def _max_samples(value: str) -> int | None:
    if not value.strip():
        return None
    try:
        return int(value)
    except ValueError:
        raise InvalidInput("max_samples: a whole number") from None


@dashboard
def evaluation_new(request):
    """Set up evaluate_model in the browser (the same service as POST /api/v1/evaluations): a model or
    version, a dataset and split, the metrics."""
    from datasets_app.selectors import datasets_visible_to

    post = request.POST
    error = ""
    if request.method == "POST":
        try:
            evaluation = services.evaluation_start(
                owner=request.user,
                model_path=post.get("model_path", "").strip(),
                test_dataset=post.get("test_dataset") or None,
                split=post.get("split", "test"),
                metrics=post.getlist("metrics") or None,
                compare_to_base=post.get("compare_to_base") == "on",
                max_samples=_max_samples(post.get("max_samples", "")),
            )
        except DomainError as exc:
            error = exc.message
        else:
            messages.success(request, f"{evaluation.public_id} queued: a worker runs it.")
            return redirect("evaluation-detail", evaluation_id=evaluation.public_id)
    tasks_of: dict[str, list[str]] = {}  # metric → the task types it fits
    for task in DEFAULT_METRICS:
        for name in metrics_for_task(task):
            tasks_of.setdefault(name, []).append(task)
    metrics = [{"name": name, "tasks": " ".join(tasks)} for name, tasks in sorted(tasks_of.items())]
    return render(
        request,
        "evaluations/new.html",
        {
            "error": error,
            "form": post,
            "chosen_metrics": set(post.getlist("metrics")),
            "models": model_choices(request.user),
            "datasets": datasets_visible_to(request.user).order_by("-created_at")[:200],
            "splits": SPLITS,
            "metrics": metrics,
            "is_post": request.method == "POST",
        },
        status=400 if error else 200,
    )
