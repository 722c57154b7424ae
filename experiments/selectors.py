"""Read-side queries and the seed-shaped representations of jobs and configs."""

from __future__ import annotations

from django.db import connection
from django.db.models import DurationField, ExpressionWrapper, F, Max, Min, OuterRef, Q, QuerySet, Subquery
from django.db.models.fields.json import KeyTransform
from django.db.models.functions import Coalesce, Now

from experiments.metric_direction import delta_trend, metric_direction
from experiments.models import Experiment, JobStatus, MetricPoint, TrainingConfig, TrainingJob, Worker

# Series reads live in experiments/tracking/series.py; these names stay importable from here.
from experiments.tracking.series import metric_keys, metric_series, metric_series_range  # noqa: F401
from t4dm_site.access import get_visible, visible
from t4dm_site.errors import InvalidInput, NotFound
from t4dm_site.public_ids import parse_public_id
from t4dm_site.roles import is_admin


def _configs() -> QuerySet[TrainingConfig]:
    return TrainingConfig.objects.select_related("dataset_version__dataset", "experiment")


def _jobs() -> QuerySet[TrainingJob]:
    return TrainingJob.objects.select_related("config", "experiment")


def experiments_visible_to(user) -> QuerySet[Experiment]:
    return visible(Experiment.objects.all(), user)


def configs_visible_to(user) -> QuerySet[TrainingConfig]:
    return visible(_configs(), user)


def jobs_visible_to(user) -> QuerySet[TrainingJob]:
    return visible(_jobs(), user)


def experiment_get(*, user, experiment_id: str) -> Experiment:
    return get_visible(Experiment.objects.all(), user, experiment_id, "experiment", prefix="exp")


def config_get(*, user, config_id: str) -> TrainingConfig:
    return get_visible(_configs(), user, config_id, "config", prefix="cfg")


def job_get(*, user, job_id: str) -> TrainingJob:
    return get_visible(_jobs(), user, job_id, "job", prefix="job")


def job_to_dict(job: TrainingJob) -> dict:
    """The seed's start_training / monitor_training shape, plus a few fields a UI needs."""
    metrics = job.latest_metrics or {}
    return {
        "job_id": job.public_id,
        "name": job.name,
        "tags": job.tags or [],
        "status": job.status,
        "started_at": job.started_at.isoformat() if job.started_at else None,
        "progress": {"epoch": job.epoch, "step": job.step, "total_steps": job.total_steps},
        "metrics": {"loss": metrics.get("loss"), "learning_rate": metrics.get("learning_rate")},
        "config_id": job.config.public_id,
        "experiment_id": job.experiment.public_id,
        "finished_at": job.finished_at.isoformat() if job.finished_at else None,
        "error": job.error or None,
        "cancel_requested": job.cancel_requested,
    }


def config_to_dict(config: TrainingConfig) -> dict:
    """The seed's TrainingConfig shape."""
    estimate = config.estimate or {}
    return {
        "config_id": config.public_id,
        "model_base": config.model_base,
        "approach": config.approach,
        "hyperparameters": config.hyperparameters,
        "estimated_time": estimate.get("training_time", "unknown"),
        "estimated_cost": estimate.get("estimated_cost", "unknown"),
        "dataset_id": config.dataset_version.dataset.public_id,
        "dataset_version": config.dataset_version.number,
        "experiment_id": config.experiment.public_id,
        "estimate": estimate,
        "early_stopping": config.early_stopping,
        "checkpointing": config.checkpointing,
    }


def workers_overview(*, user) -> list[dict]:
    """Every known worker, busy ones first: what it runs, its GPU, and how long since it reported.
    Which job a worker runs is shown to admins and to that job's owner only; anyone else sees the
    worker as busy, with no job id (another researcher's job ids are not theirs to learn)."""
    from django.utils import timezone

    now = timezone.now()
    workers = Worker.objects.select_related("current_job").order_by("status", "name")
    admin = is_admin(user)

    def current_job_id(worker) -> str | None:
        job = worker.current_job
        if job is None or not (admin or job.owner_id == user.pk):
            return None
        return job.public_id

    return [
        {
            "name": w.name,
            "queue": w.queue,
            "hostname": w.hostname,
            "status": w.status,
            "gpu_name": w.gpu_name,
            "gpu_count": w.gpu_count,
            "gpu_memory_total_mb": w.gpu_memory_total_mb,
            "gpu_memory_free_mb": w.gpu_memory_free_mb,
            "current_job_id": current_job_id(w),
            "last_heartbeat_at": w.last_heartbeat_at.isoformat(),
            "seconds_since_heartbeat": round((now - w.last_heartbeat_at).total_seconds(), 1),
            "started_at": w.started_at.isoformat(),
        }
        for w in workers
    ]


# --- dashboard: runs list, comparison --------------------------------------------------------------

RUN_FILTERS = ("status", "dataset", "model_base", "approach", "tag")


def job_runs(
    *,
    user,
    q: str = "",
    status: str = "",
    dataset: str = "",
    model_base: str = "",
    approach: str = "",
    tag: str = "",
) -> QuerySet[TrainingJob]:
    """Jobs (runs) for the experiments list: free-text search over ids, names, model and notes,
    and exact filters."""
    jobs = jobs_visible_to(user).select_related("config__dataset_version__dataset")
    if q:
        q = q.strip()
        text = (
            Q(name__icontains=q)
            | Q(experiment__name__icontains=q)
            | Q(experiment__notes__icontains=q)
            | Q(config__model_base__icontains=q)
            | Q(config__dataset_version__dataset__name__icontains=q)
        )
        for prefix, field in (("job", "pk"), ("exp", "experiment_id"), ("cfg", "config_id")):
            if q.lower().startswith(prefix + "-") and q[len(prefix) + 1 :].isdigit():
                text |= Q(**{field: int(q[len(prefix) + 1 :])})
        jobs = jobs.filter(text)
    if status:
        jobs = jobs.filter(status=status)
    if dataset:
        if dataset.startswith("ds-") and dataset[3:].isdigit():
            jobs = jobs.filter(config__dataset_version__dataset_id=int(dataset[3:]))
        else:
            jobs = jobs.filter(config__dataset_version__dataset__name=dataset)
    if model_base:
        jobs = jobs.filter(config__model_base=model_base)
    if approach:
        jobs = jobs.filter(config__approach=approach)
    if tag:
        if connection.vendor == "postgresql":  # jsonb containment in the query: no rows read into Python
            jobs = jobs.filter(Q(experiment__tags__contains=[tag]) | Q(tags__contains=[tag]))
        else:  # SQLite has no JSON containment lookup; match the lists in Python
            ids = [e.pk for e in experiments_visible_to(user).only("pk", "tags") if tag in (e.tags or [])]
            run_ids = [
                pk for pk, tags in jobs_visible_to(user).values_list("pk", "tags") if tag in (tags or [])
            ]
            jobs = jobs.filter(Q(experiment_id__in=ids) | Q(pk__in=run_ids))
    return jobs


RUN_SORTS = {
    "created": "created_at",
    "status": "status",
    "model": "config__model_base",
    "approach": "config__approach",
    "dataset": "config__dataset_version__dataset_id",
    "job": "pk",
}


def job_runs_ordered(
    jobs: QuerySet[TrainingJob], *, sort: str, by_experiment: bool = False
) -> QuerySet[TrainingJob]:
    """``jobs`` in the runs table's order, in the query (so that a page of 10,000 runs is one LIMIT):
    a column (`created`, `status`, ...), `duration`, a hyperparameter `hp.<name>`, or a metric
    `<key>__final|min|max` (its training series; else the newest evaluation's value). `-` sorts
    descending; runs without the value come last either way; ties go newest first."""
    descending = sort.startswith("-")
    field = sort.lstrip("-")

    def by(expression) -> list:
        ordering = expression.desc(nulls_last=True) if descending else expression.asc(nulls_last=True)
        return [ordering]

    if field in RUN_SORTS:
        order = by(F(RUN_SORTS[field]))
    elif field == "duration":
        jobs = jobs.annotate(
            run_duration=ExpressionWrapper(Coalesce("finished_at", Now()) - F("started_at"), DurationField())
        )
        order = by(F("run_duration"))
    elif field.startswith("hp.") and field[3:]:
        order = by(KeyTransform(field[3:], "config__hyperparameters"))
    else:
        key, _, stat = field.rpartition("__")
        if not key or stat not in ("final", "min", "max"):
            key, stat = "", ""
        if not key:
            order = by(F("created_at"))
        else:
            from experiments.models import Evaluation, EvaluationKind, EvaluationStatus

            points = MetricPoint.objects.filter(job=OuterRef("pk"), key=key)
            if stat == "final":
                training = points.order_by("-step").values("value")[:1]
            else:
                aggregate = Min("value") if stat == "min" else Max("value")
                training = points.values("job").annotate(v=aggregate).values("v")
            evaluated = (
                Evaluation.objects.filter(
                    job=OuterRef("pk"), status=EvaluationStatus.SUCCEEDED, kind=EvaluationKind.EVALUATE
                )
                .order_by("-created_at")
                .values(value=KeyTransform(key, "metrics"))[:1]
            )
            jobs = jobs.annotate(sort_training=Subquery(training), sort_evaluated=Subquery(evaluated))
            order = by(F("sort_training")) + by(F("sort_evaluated"))
    # Grouped: the newest experiment's runs first, each experiment's runs in ``sort`` order.
    groups = [F("experiment__created_at").desc(), F("experiment_id").desc()] if by_experiment else []
    return jobs.order_by(*groups, *order, "-created_at", "-pk")


def job_runs_page(
    jobs: QuerySet[TrainingJob], *, sort: str, start: int, size: int, by_experiment: bool = False
) -> list[TrainingJob]:
    """One page of ``jobs`` in ``sort`` order: the database sorts ids only (a narrow query that an index
    on created_at serves for the default order), then the page's rows are read with their configs,
    experiments and datasets. Sorting the full joined rows cost ~0.1 s per 5,000 runs."""
    ordered = job_runs_ordered(jobs, sort=sort, by_experiment=by_experiment)
    pks = list(ordered.values_list("pk", flat=True)[start : start + size])
    found = {job.pk: job for job in jobs.filter(pk__in=pks).order_by()}
    return [found[pk] for pk in pks if pk in found]


def job_runs_choices(*, user) -> dict[str, list[str]]:
    """Values the list's filter menus offer: those that occur in the user's runs."""
    configs = configs_visible_to(user)
    tags = sorted(
        {t for e in experiments_visible_to(user).only("tags") for t in (e.tags or [])}
        # Only runs that have tags, each list once: not 10,000 empty lists read into Python.
        | {
            t
            for tags in jobs_visible_to(user)
            .exclude(tags=[])
            .order_by()
            .values_list("tags", flat=True)
            .distinct()
            for t in (tags or [])
        }  # fmt: skip
    )
    return {
        "model_base": sorted(configs.order_by().values_list("model_base", flat=True).distinct()),
        "approach": sorted(configs.order_by().values_list("approach", flat=True).distinct()),
        "dataset": sorted(
            {c.dataset_version.dataset.public_id for c in configs.select_related("dataset_version__dataset")}
        ),
        "tag": tags,
    }


def job_hyperparameter_columns(*, jobs: list[TrainingJob], limit: int = 4) -> list[str]:
    """The hyperparameters whose values differ between these runs (what tells them apart), at most
    `limit`, in the order the configs list them: the runs table's default columns."""
    seen: dict[str, set[str]] = {}
    for job in jobs:
        for name, value in (job.config.hyperparameters or {}).items():
            if not isinstance(value, dict | list):
                seen.setdefault(name, set()).add(repr(value))
    differing = [name for name, values in seen.items() if len(values) > 1]
    return differing[:limit]


def job_evaluation_metrics(*, jobs: list[TrainingJob]) -> dict[int, dict[str, float]]:
    """{job pk: its newest finished evaluation's numeric metrics} (accuracy of a classification run
    lives there, not in the training points)."""
    from experiments.models import Evaluation, EvaluationKind, EvaluationStatus

    out: dict[int, dict[str, float]] = {}
    evaluations = (
        Evaluation.objects.filter(
            job__in=jobs, status=EvaluationStatus.SUCCEEDED, kind=EvaluationKind.EVALUATE
        )
        .order_by("created_at")
        .values_list("job_id", "metrics")
    )
    for job_pk, metrics in evaluations:
        out[job_pk] = {k: v for k, v in (metrics or {}).items() if isinstance(v, int | float)}
    return out


def job_metric_summaries(*, jobs: list[TrainingJob], keys: list[str]) -> dict[int, dict[str, dict]]:
    """{job pk: {key: {"final": value at the highest step, "min": lowest, "max": highest value}}} for
    the given keys."""
    out: dict[int, dict[str, dict]] = {job.pk: {} for job in jobs}
    if not jobs or not keys:
        return out
    rows = (
        MetricPoint.objects.filter(job__in=jobs, key__in=keys)
        .values("job_id", "key")
        .annotate(low=Min("value"), high=Max("value"), last_step=Max("step"))
    )
    last_steps = {}
    for row in rows:
        out[row["job_id"]][row["key"]] = {"min": row["low"], "max": row["high"], "final": None}
        last_steps[(row["job_id"], row["key"])] = row["last_step"]
    finals = Q()
    for (job_pk, key), step in last_steps.items():
        finals |= Q(job_id=job_pk, key=key, step=step)
    if last_steps:
        for job_pk, key, value in MetricPoint.objects.filter(finals).values_list("job_id", "key", "value"):
            out[job_pk][key]["final"] = value
    return out


def _flatten(prefix: str, value, into: dict) -> None:
    if isinstance(value, dict):
        for k, v in value.items():
            _flatten(f"{prefix}.{k}" if prefix else k, v, into)
    else:
        into[prefix] = value


def job_parameters(job: TrainingJob) -> dict[str, object]:
    """A run's parameters as one flat, ordered mapping (what the compare table shows)."""
    config = job.config
    params: dict[str, object] = {
        "model_base": config.model_base,
        "approach": config.approach,
        "task_type": config.task_type,
        "template": config.template or "—",
        "dataset": f"{config.dataset_version.dataset.public_id} v{config.dataset_version.number}",
        "experiment": job.experiment.name,
    }
    _flatten("", config.hyperparameters or {}, params)
    _flatten("early_stopping", config.early_stopping or {"enabled": False}, params)
    _flatten("checkpointing", config.checkpointing or {}, params)
    return params


COMPARE_MIN, COMPARE_MAX = 2, 10


def runs_compare(*, user, job_ids: list[str]) -> dict:
    """Two to ten runs side by side: a parameter table marking what differs, and final/min metric
    values with their deltas to the first run (the baseline)."""
    job_ids = list(dict.fromkeys(j.strip() for j in job_ids if j.strip()))
    if not COMPARE_MIN <= len(job_ids) <= COMPARE_MAX:
        raise InvalidInput(f"pick {COMPARE_MIN} to {COMPARE_MAX} runs to compare; got {len(job_ids)}")
    # One query for the runs and everything job_parameters reads (not one job_get per run).
    pks = [parse_public_id("job", j) for j in job_ids]
    found = {
        j.pk: j
        for j in jobs_visible_to(user).select_related("config__dataset_version__dataset").filter(pk__in=pks)
    }
    for job_id, pk in zip(job_ids, pks, strict=True):
        if pk not in found:
            raise NotFound(f"job {job_id} does not exist")
    jobs = [found[pk] for pk in pks]
    params = [job_parameters(j) for j in jobs]
    names = list(dict.fromkeys(name for p in params for name in p))
    parameters = []
    for name in names:
        values = [p.get(name, "—") for p in params]
        parameters.append({"name": name, "values": values, "differs": len({repr(v) for v in values}) > 1})
    keys = sorted({k for j in jobs for k in (j.latest_metrics or {})} - {"eta_seconds", "epoch"})
    summaries = job_metric_summaries(jobs=jobs, keys=keys)
    metrics = []
    for key in keys:
        row = {"key": key, "direction": metric_direction(key), "runs": []}
        base = summaries[jobs[0].pk].get(key, {})
        for job in jobs:
            s = summaries[job.pk].get(key, {})
            entry = {"final": s.get("final"), "min": s.get("min")}
            for stat in ("final", "min"):
                ok = entry[stat] is not None and base.get(stat) is not None
                entry[f"{stat}_delta"] = entry[stat] - base[stat] if ok else None
                entry[f"{stat}_trend"] = delta_trend(key, entry[f"{stat}_delta"])  # better / worse / ""
            row["runs"].append(entry)
        metrics.append(row)
    return {
        "runs": [job_to_dict(j) for j in jobs],
        "parameters": parameters,
        "metrics": metrics,
        "differing": [p["name"] for p in parameters if p["differs"]],
    }


def checkpoint_best(checkpoints: list) -> tuple[object | None, str]:
    """The best of a job's checkpoints, by the rule the workflow page uses: the one the Trainer marked
    (best by the early-stopping metric); else the lowest val_loss (or loss) among the scored ones; else
    the latest. Returns (checkpoint or None, how it was chosen)."""
    best = next((c for c in checkpoints if c.is_best), None)
    if best is not None:
        return best, "best by the early-stopping metric"
    if not checkpoints:
        return None, ""

    def score(c):
        metrics = c.metrics or {}
        return metrics.get("val_loss", metrics.get("loss"))

    scored = [c for c in checkpoints if isinstance(score(c), int | float)]
    if scored:
        best = min(scored, key=score)
        return best, "lowest val_loss" if "val_loss" in (best.metrics or {}) else "lowest loss"
    return checkpoints[-1], "latest"


# --- the base models the set-up forms offer ------------------------------------------------------


def model_choices(user) -> list[dict]:
    """Models a set-up form offers (evaluation, human evaluation): registered versions, then finished
    jobs' final models, then the built-in tiny model; each {ref, label}. Any other reference still works
    typed by hand (a checkpoint job-001/step-40, a model folder)."""
    from models_registry.models import ModelVersion

    versions = visible(ModelVersion.objects.select_related("job"), user, owner_field="job__owner")
    versions = versions.order_by("-created_at")
    choices = [{"ref": v.ref, "label": f"{v.ref} · {v.stage}"} for v in versions[:50]]
    jobs = visible(TrainingJob.objects.filter(status=JobStatus.SUCCEEDED).select_related("config"), user)
    jobs = jobs.order_by("-created_at")
    choices += [{"ref": j.public_id, "label": f"{j.public_id} · {j.config.model_base} {j.config.approach}"}
                for j in jobs[:50]]  # fmt: skip
    choices.append({"ref": "t4dm-tiny", "label": "t4dm-tiny · the built-in tiny model (untrained)"})
    return choices


def loadable_bases(user) -> list[dict]:
    """Base models the training and workflow forms offer: those a worker here loads (the built-in
    model first, then the user's versions and finished runs), never the estimator's hub names."""
    choices = model_choices(user)  # versions, finished jobs, then the built-in model
    return [choices[-1], *choices[:-1]]
