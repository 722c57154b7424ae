"""Server-rendered pages. Thin: authorize, select, render.

Dashboards are for researchers and admins; evaluators land on their rating queue and get 403 on a
dashboard URL.
"""

from __future__ import annotations

import json
from pathlib import Path

from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.http import FileResponse, Http404, JsonResponse
from django.shortcuts import redirect, render
from django.utils import timezone
from django.views.decorators.http import require_POST

from datasets_app.selectors import datasets_visible_to
from experiments import selectors, services
from experiments.demo import demo_job_start
from experiments.models import Approach, JobStatus
from experiments.saved_views import runs_view_delete, runs_view_save, runs_views_for
from t4dm_site.access import visible
from t4dm_site.errors import DomainError, NotFound
from t4dm_site.pages import dashboard
from t4dm_site.roles import can_train

RUN_METRICS = ("loss", "val_loss")
RUNS_PAGE_SIZE = 50  # rows of the runs table per page


def _eta_seconds(job) -> float | None:
    """The worker's own estimate when it sends one, else the average step time so far."""
    metrics = job.latest_metrics or {}
    if metrics.get("eta_seconds") is not None:
        return float(metrics["eta_seconds"])
    if job.status != JobStatus.RUNNING or not job.started_at or not job.step or not job.total_steps:
        return None
    elapsed = (timezone.now() - job.started_at).total_seconds()
    return max(0.0, elapsed / job.step * (job.total_steps - job.step))


def _workers(active_jobs, user) -> tuple[list[dict], bool]:
    """Workers from their heartbeats when the platform records them; else what the jobs say."""
    overview = getattr(selectors, "workers_overview", None)
    if overview is not None:
        return overview(user=user), True
    return [
        {"name": j.worker, "status": "busy", "current_job_id": j.public_id, "gpu_name": ""}
        for j in active_jobs
        if j.worker
    ], False


FAVICON = Path(__file__).resolve().parent.parent / "static" / "favicon.ico"


def favicon(request):
    """/favicon.ico: browsers ask for it on every page whatever the <link rel=icon> says."""
    response = FileResponse(FAVICON.open("rb"), content_type="image/x-icon")
    response["Cache-Control"] = "public, max-age=86400"
    return response


def _recent_model_versions(user) -> list:
    from models_registry.models import ModelVersion

    versions = visible(ModelVersion.objects.select_related("job"), user, owner_field="job__owner")
    return list(versions.order_by("-created_at")[:8])


@login_required
def overview(request):
    if not can_train(request.user):
        return redirect("rating-queue")
    user = request.user
    jobs = list(selectors.jobs_visible_to(user)[:50])
    active = list(
        selectors.jobs_visible_to(user).filter(status__in=[JobStatus.QUEUED, JobStatus.RUNNING])[:50]
    )
    for job in active:
        job.eta_seconds = _eta_seconds(job)
    workers, workers_recorded = _workers(active, user)
    datasets = list(datasets_visible_to(user)[:50])
    problems = []
    for ds in datasets:
        version = ds.latest_version
        if version is not None and version.validation_status != "passed":
            problems.append((ds, version))
    return render(
        request,
        "overview.html",
        {
            "can_train": True,
            "jobs": jobs,
            "active": active,
            "workers": workers,
            "workers_recorded": workers_recorded,
            "experiments": list(selectors.experiments_visible_to(user)[:8]),
            "model_versions": _recent_model_versions(user),
            "datasets": datasets[:20],
            "dataset_problems": problems,
        },
    )


@dashboard
def job_detail(request, job_id: str):
    try:
        job = selectors.job_get(user=request.user, job_id=job_id)
    except NotFound as exc:
        raise Http404(str(exc)) from None
    checkpoints = list(job.checkpoints.order_by("step"))
    # The best checkpoint by the workflow page's rule, once the job has finished (while it runs, only
    # the one the Trainer marked).
    best, best_by = selectors.checkpoint_best(
        checkpoints if job.is_terminal else [c for c in checkpoints if c.is_best]
    )
    overview = _job_overview(job)
    return render(
        request,
        "job_detail.html",
        {
            "job": job,
            "job_json": {**selectors.job_to_dict(job), **_job_page_extras(job, overview)},
            "config": job.config,
            "checkpoints": checkpoints,
            "best_step": best.step if best is not None else None,
            "best_by": best_by,
            # Resume continues a stopped run; a succeeded job has nothing left to resume.
            "can_resume": job.status in (JobStatus.FAILED, JobStatus.CANCELLED) and bool(checkpoints),
            "version": job.model_versions.order_by("-created_at").first(),
            "events": list(job.events.order_by("-id")[:50])[::-1],
            "overview": overview,
        },
    )


def _job_page_extras(job, overview: dict) -> dict:
    """What the job page's charts draw besides the job's own points: the parent's curve up to the
    step a resumed job started from, and the job's evaluations' metrics (a bar chart)."""
    parent = None
    if job.resume_from_id is not None:
        checkpoint = job.resume_from
        parent = {"job_id": checkpoint.job.public_id, "step": checkpoint.step}
    evaluations = []
    for e in reversed(overview["evaluations"]):  # oldest first, as the bars read left to right
        metrics = {
            k: v
            for k, v in (e.metrics or {}).items()
            if isinstance(v, int | float) and not isinstance(v, bool)
        }
        if metrics:
            step = e.checkpoint.step if e.checkpoint_id else None
            label = f"{e.public_id} (step {step})" if step is not None else e.public_id
            evaluations.append({"evaluation_id": e.public_id, "label": label, "metrics": metrics})
    return {"parent": parent, "evaluations": evaluations}


def _job_overview(job) -> dict:
    """The job page's overview panel: what was trained how, for how long, and what came of it."""
    from experiments.models import EvaluationStatus

    config = job.config
    metrics = {k: v for k, v in (job.latest_metrics or {}).items()
               if isinstance(v, int | float) and k not in ("eta_seconds", "epoch")}  # fmt: skip
    return {
        "hyperparameters": sorted(
            (k, v) for k, v in (config.hyperparameters or {}).items() if not isinstance(v, dict)
        ),  # fmt: skip
        "duration": _run_seconds(job),
        "final_metrics": sorted(metrics.items()),
        "train_tokens": (config.estimate or {}).get("train_tokens"),
        "evaluations": list(
            job.evaluations.filter(status=EvaluationStatus.SUCCEEDED)
            .select_related("checkpoint")
            .order_by("-created_at")[:5]
        ),
    }


def _best_stat(key: str) -> str:
    from experiments.metric_direction import metric_direction

    return "max" if metric_direction(key) == "higher" else "min"


def _run_seconds(job) -> float | None:
    """How long the run trained: start to finish, or to now while it runs."""
    if job.started_at is None:
        return None
    return ((job.finished_at or timezone.now()) - job.started_at).total_seconds()


def _page_query(request, page: int) -> str:
    query = request.GET.copy()
    query["page"] = str(page)
    return query.urlencode()


@dashboard
def experiments_list(request):
    params = {name: request.GET.get(name, "").strip() for name in ("q", *selectors.RUN_FILTERS)}
    requested = [k.strip() for raw in request.GET.getlist("metric") for k in raw.split(",")]
    metric_keys = list(dict.fromkeys(k for k in requested if k))[:6] or list(RUN_METRICS)
    sort = request.GET.get("sort", "-created")
    page = int(request.GET.get("page", "1")) if request.GET.get("page", "1").isdigit() else 1
    page = max(page, 1)
    # Filter, sort and page in the query: a page of 10,000 runs reads RUNS_PAGE_SIZE of them.
    runs = selectors.job_runs(user=request.user, **params).select_related("experiment")
    total = runs.count()
    start = (page - 1) * RUNS_PAGE_SIZE
    grouped = request.GET.get("group") == "experiment"
    jobs = selectors.job_runs_page(runs, sort=sort, start=start, size=RUNS_PAGE_SIZE, by_experiment=grouped)
    summaries = selectors.job_metric_summaries(jobs=jobs, keys=metric_keys)
    evaluated = selectors.job_evaluation_metrics(jobs=jobs)
    for job in jobs:  # a key the training never logged may be an evaluation's (accuracy)
        for key in metric_keys:
            if key not in summaries[job.pk] and key in evaluated.get(job.pk, {}):
                value = evaluated[job.pk][key]
                summaries[job.pk][key] = {"final": value, "min": value, "max": value}
    requested_hp = [k.strip() for raw in request.GET.getlist("hp") for k in raw.split(",") if k.strip()]
    hp_keys = list(dict.fromkeys(requested_hp))[:8] or selectors.job_hyperparameter_columns(jobs=jobs)
    rows = [
        {
            "job": j,
            "metrics": summaries.get(j.pk, {}),
            "hp": [(j.config.hyperparameters or {}).get(k, "—") for k in hp_keys],
            "duration": _run_seconds(j),
        }
        for j in jobs
    ]
    # Each metric: its final value and its best one (min where lower is better, else max).
    columns = [c for k in metric_keys for c in ((k, "final"), (k, _best_stat(k)))]
    for i, row in enumerate(rows):
        row["cells"] = [row["metrics"].get(k, {}).get(stat) for k, stat in columns]
        # Grouped by experiment: a heading row before each experiment's first run on the page.
        row["group_start"] = grouped and (
            i == 0 or rows[i - 1]["job"].experiment_id != row["job"].experiment_id
        )
    return render(
        request,
        "experiments_list.html",
        {
            "rows": rows,
            "total": total,
            "page": page,
            "first_row": start + 1,
            "previous_query": _page_query(request, page - 1) if page > 1 else "",
            "next_query": _page_query(request, page + 1) if start + RUNS_PAGE_SIZE < total else "",
            "filters": params,
            "choices": selectors.job_runs_choices(user=request.user),
            "statuses": JobStatus.values,
            "metric_keys": metric_keys,
            "metric_columns": [(f"{k}__{stat}", f"{k} ({stat})") for k, stat in columns],
            "hp_keys": hp_keys,
            "hp_requested": ",".join(requested_hp),
            "sort": sort,
            "grouped": grouped,
            "column_count": 9 + len(hp_keys) + len(columns),
            "query": request.GET.urlencode(),
            "saved_views": runs_views_for(request.user),
        },
    )


def _runs_view_action(request, change) -> JsonResponse:
    """A saved-view change from the runs page's script: JSON in, the account's views (or an error) out."""
    try:
        change(json.loads(request.body or b"{}"))
    except (ValueError, TypeError, AttributeError):
        return JsonResponse({"error": {"code": "invalid_input", "message": "send a JSON object"}}, status=400)
    except DomainError as exc:
        return JsonResponse({"error": {"code": exc.code, "message": str(exc)}}, status=exc.status)
    return JsonResponse({"views": runs_views_for(request.user)})


@dashboard
@require_POST
def runs_view_save_action(request):
    """Save the runs table's current query under a name."""
    return _runs_view_action(
        request,
        lambda p: runs_view_save(
            owner=request.user, name=str(p.get("name", "")), query=str(p.get("query", ""))
        ),
    )


@dashboard
@require_POST
def runs_view_delete_action(request):
    return _runs_view_action(
        request, lambda p: runs_view_delete(owner=request.user, name=str(p.get("name", "")))
    )


@dashboard
def experiments_compare(request):
    job_ids = [j for raw in request.GET.getlist("jobs") for j in raw.split(",")]
    try:
        comparison = selectors.runs_compare(user=request.user, job_ids=job_ids)
    except DomainError as exc:
        return render(request, "experiments_compare.html", {"error": str(exc)}, status=exc.status)
    return render(
        request,
        "experiments_compare.html",
        {"comparison": comparison, "compare_json": {"runs": [r["job_id"] for r in comparison["runs"]]}},
    )


@dashboard
def config_new(request):
    datasets = []
    for ds in datasets_visible_to(request.user):
        version = ds.latest_version
        if version is not None:
            datasets.append(
                {"id": ds.public_id, "name": ds.name, "task_type": ds.task_type, "version": version}
            )
    form = {
        "defaults": services.default_hyperparameters(),
        "default_approach": services.default_approach(),
        "templates": services.TEMPLATES,
        "approaches": [
            (value, label, value in services.LOCAL_APPROACHES) for value, label in Approach.choices
        ],
        # Only what a worker here can load: the built-in model, then the user's registered versions and
        # finished jobs (a hub id is still accepted typed by hand, where a worker has it cached).
        "model_bases": selectors.loadable_bases(request.user),
    }
    experiments = selectors.experiments_visible_to(request.user).order_by("-created_at")[:100]
    return render(
        request,
        "config_form.html",
        {"datasets": datasets, "form": form, "form_json": form, "experiments": experiments},
    )


@dashboard
@require_POST
def config_estimate(request):
    """The form's live estimate: the same service as POST /api/v1/estimate."""
    try:
        payload = json.loads(request.body or b"{}")
        hyperparameters = services.hyperparameters_resolve(
            payload.get("template") or None, payload.get("hyperparams")
        )
        estimate = services.resource_estimate(
            owner=request.user,
            model_base=(payload.get("model_base") or "").strip(),
            approach=payload.get("approach") or None,
            hyperparams=payload.get("hyperparams"),
            template=payload.get("template") or None,
            dataset_id=payload.get("dataset_id") or None,
            dataset_version=payload.get("dataset_version"),
        )
    except (ValueError, TypeError) as exc:
        return JsonResponse(
            {"error": {"code": "invalid_input", "message": str(exc), "details": None}}, status=400
        )
    except DomainError as exc:
        return JsonResponse({"error": {"code": exc.code, "message": str(exc), "details": None}}, status=400)
    return JsonResponse({"estimate": estimate, "hyperparameters": hyperparameters})


@login_required
@require_POST
def demo_start(request):
    if not can_train(request.user):
        raise PermissionDenied("Dashboards are for researchers and admins.")
    job = demo_job_start(owner=request.user)
    return redirect("job-detail", job_id=job.public_id)
