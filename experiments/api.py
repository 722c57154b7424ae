"""Experiments, training configs and jobs (/api/v1/...). Thin: parse → service/selector → schema."""

from __future__ import annotations

from typing import Any

from ninja import Router, Schema

from experiments import selectors, services
from experiments.jobs import job_update
from experiments.schemas import (
    CheckpointConfigOut,
    CheckpointingIn,
    ConfigIn,
    ConfigOut,
    EarlyStopConfigOut,
    EarlyStoppingIn,
    EstimateIn,
    ExperimentIn,
    ExperimentOut,
    JobIn,
    JobOut,
    JobPatchIn,
    ResourceEstimateOut,
    ResumeIn,
    SeriesOut,
    WorkerOut,
)
from t4dm_site.auth import trainer_auth
from t4dm_site.errors import InvalidInput

router = Router(tags=["training"], auth=trainer_auth)


def _experiment_out(experiment) -> dict:
    return {
        "experiment_id": experiment.public_id,
        "name": experiment.name,
        "notes": experiment.notes,
        "tags": experiment.tags,
        "created_at": experiment.created_at.isoformat(),
    }


@router.post("/experiments", response={201: ExperimentOut})
def experiment_create(request, payload: ExperimentIn):
    experiment = services.experiment_create(
        owner=request.auth, name=payload.name, notes=payload.notes, tags=payload.tags
    )
    return 201, _experiment_out(experiment)


@router.get("/experiments", response=list[ExperimentOut])
def experiment_list(request):
    return [_experiment_out(e) for e in selectors.experiments_visible_to(request.auth)[:200]]


@router.get("/experiments/{experiment_id}", response=ExperimentOut)
def experiment_detail(request, experiment_id: str):
    return _experiment_out(selectors.experiment_get(user=request.auth, experiment_id=experiment_id))


@router.post("/configs", response={201: ConfigOut})
def config_create(request, payload: ConfigIn):
    """configure_training: resolve defaults/templates, validate, estimate resources."""
    experiment = (
        selectors.experiment_get(user=request.auth, experiment_id=payload.experiment_id)
        if payload.experiment_id
        else None
    )
    config = services.training_config_create(
        owner=request.auth,
        dataset_id=payload.dataset_id,
        dataset_version=payload.dataset_version,
        model_base=payload.model_base,
        approach=payload.approach,
        hyperparams=payload.hyperparams,
        template=payload.template,
        experiment=experiment,
        early_stopping=payload.early_stopping.dict(exclude_none=True) if payload.early_stopping else None,
        checkpointing=payload.checkpointing.dict(exclude_none=True) if payload.checkpointing else None,
        queue=payload.queue,
    )
    return 201, selectors.config_to_dict(config)


@router.get("/templates", response=dict[str, dict])
def config_templates(request):
    """The hyperparameter templates (`efficient`, `quality`) and the defaults they override."""
    return {"defaults": services.default_hyperparameters(), **services.TEMPLATES}


@router.post("/estimate", response=ResourceEstimateOut)
def resource_estimate(request, payload: EstimateIn):
    """estimate_resources: GPU memory, time, cost and GPU for a stored config or a draft one."""
    if payload.config_id:
        config = selectors.config_get(user=request.auth, config_id=payload.config_id)
        return config.estimate
    if not payload.model_base:
        raise InvalidInput("give config_id, or model_base (and optionally dataset_id, approach, hyperparams)")
    return services.resource_estimate(
        owner=request.auth,
        model_base=payload.model_base,
        approach=payload.approach,
        hyperparams=payload.hyperparams,
        template=payload.template,
        dataset_id=payload.dataset_id,
        dataset_version=payload.dataset_version,
        task_type=payload.task_type,
    )


@router.post("/configs/{config_id}/early-stopping", response=EarlyStopConfigOut)
def configure_early_stopping(request, config_id: str, payload: EarlyStoppingIn):
    config = services.training_config_set_early_stopping(
        config=selectors.config_get(user=request.auth, config_id=config_id), **payload.dict(exclude_none=True)
    )
    return {"config_id": config.public_id, **config.early_stopping}


@router.post("/configs/{config_id}/checkpoints", response=CheckpointConfigOut)
def configure_checkpoints(request, config_id: str, payload: CheckpointingIn):
    config = services.training_config_set_checkpointing(
        config=selectors.config_get(user=request.auth, config_id=config_id), **payload.dict(exclude_none=True)
    )
    return {"config_id": config.public_id, **config.checkpointing}


@router.get("/configs", response=list[ConfigOut])
def config_list(request):
    return [selectors.config_to_dict(c) for c in selectors.configs_visible_to(request.auth)[:200]]


@router.get("/configs/{config_id}", response=ConfigOut)
def config_detail(request, config_id: str):
    return selectors.config_to_dict(selectors.config_get(user=request.auth, config_id=config_id))


@router.post("/jobs", response={201: JobOut})
def job_start(request, payload: JobIn):
    """start_training: create the job and enqueue it for a worker."""
    config = selectors.config_get(user=request.auth, config_id=payload.config_id)
    job = services.job_start(
        owner=request.auth,
        config=config,
        resume_from=payload.resume_from,
        name=payload.name,
        tags=payload.tags,
    )
    return 201, selectors.job_to_dict(job)


@router.get("/jobs", response=list[JobOut])
def job_list(request, status: str | None = None):
    jobs = selectors.jobs_visible_to(request.auth)
    if status:
        jobs = jobs.filter(status=status)
    return [selectors.job_to_dict(j) for j in jobs[:200]]


@router.get("/jobs/{job_id}", response=JobOut)
def job_monitor(request, job_id: str):
    """monitor_training."""
    return selectors.job_to_dict(selectors.job_get(user=request.auth, job_id=job_id))


@router.patch("/jobs/{job_id}", response=JobOut)
def job_edit(request, job_id: str, payload: JobPatchIn):
    """Rename a run or replace its tags (`name`, `tags`; a field left out stays as it is)."""
    job = job_update(
        job=selectors.job_get(user=request.auth, job_id=job_id), name=payload.name, tags=payload.tags
    )
    return selectors.job_to_dict(job)


@router.post("/jobs/{job_id}/cancel", response=JobOut)
def job_cancel(request, job_id: str):
    job = services.job_cancel(job=selectors.job_get(user=request.auth, job_id=job_id))
    return selectors.job_to_dict(job)


@router.post("/jobs/{job_id}/resume", response={201: JobOut})
def job_resume(request, job_id: str, payload: ResumeIn | None = None):
    """resume_training: a new job of the same config from one of this job's checkpoints."""
    job = services.job_resume(
        owner=request.auth,
        job=selectors.job_get(user=request.auth, job_id=job_id),
        step=payload.step if payload else None,
    )
    return 201, selectors.job_to_dict(job)


class JobEventOut(Schema):
    id: int
    level: str
    message: str
    created_at: str


@router.get("/jobs/{job_id}/events", response=list[JobEventOut])
def job_events(request, job_id: str, after_id: int = 0, limit: int = 500):
    """The job's log: status changes and worker messages with id > after_id, oldest first (the CLI's
    `t4dm jobs logs --follow` polls with the last id it printed)."""
    job = selectors.job_get(user=request.auth, job_id=job_id)
    events = job.events.filter(id__gt=after_id).order_by("id")[: max(1, min(limit, 5000))]
    return [
        {"id": e.id, "level": e.level, "message": e.message, "created_at": e.created_at.isoformat()}
        for e in events
    ]


@router.get("/jobs/{job_id}/metrics", response=SeriesOut)
def job_metrics(
    request,
    job_id: str,
    after_id: int = 0,
    max_points: int = 2000,
    key: str | None = None,
    start: int | None = None,
    end: int | None = None,
):
    """Every series (points with id > after_id), or with `key` one series between steps `start` and
    `end`: exact where the range holds few points, min/max per bucket otherwise (a chart's zoom)."""
    job = selectors.job_get(user=request.auth, job_id=job_id)
    max_points = max(10, min(max_points, 100_000))
    if key:
        return selectors.metric_series_range(
            job=job, key=key, start=start, end=end, max_points=max_points, after_id=after_id
        )
    return selectors.metric_series(job=job, after_id=after_id, max_points=max_points)


@router.get("/workers", response=list[WorkerOut])
def worker_list(request):
    """Training workers as their heartbeats describe them (GPU, queue, current job, last seen); the
    current job's id only for its owner and admins."""
    return selectors.workers_overview(user=request.auth)


# --- dashboard reads: the runs list and the comparison ----------------------------------------------


class RunMetricOut(Schema):
    final: float | None
    min: float | None


class RunOut(Schema):
    job: JobOut
    experiment_name: str
    tags: list[str]
    dataset_id: str
    model_base: str
    approach: str
    metrics: dict[str, RunMetricOut]


class CompareParameterOut(Schema):
    name: str
    values: list[Any]
    differs: bool


class CompareOut(Schema):
    runs: list[JobOut]
    parameters: list[CompareParameterOut]
    metrics: list[dict[str, Any]]
    differing: list[str]


@router.get("/runs", response=list[RunOut])
def run_list(
    request,
    q: str = "",
    status: str = "",
    dataset: str = "",
    model_base: str = "",
    approach: str = "",
    tag: str = "",
    metric: str = "loss,val_loss",
    sort: str = "-created",
    offset: int = 0,
):
    """Runs (jobs) with search and filters, and the final/min value of each metric in `metric`: 200 from
    `offset` in `sort` order (as the runs table: `status`, `hp.learning_rate`, `loss__final`, `-...`)."""
    runs = selectors.job_runs(
        user=request.auth,
        q=q,
        status=status,
        dataset=dataset,
        model_base=model_base,
        approach=approach,
        tag=tag,
    )
    jobs = selectors.job_runs_page(runs, sort=sort, start=max(offset, 0), size=200)
    keys = [k.strip() for k in metric.split(",") if k.strip()][:10]
    summaries = selectors.job_metric_summaries(jobs=jobs, keys=keys)
    return [
        {
            "job": selectors.job_to_dict(j),
            "experiment_name": j.experiment.name,
            "tags": list(dict.fromkeys([*(j.experiment.tags or []), *(j.tags or [])])),
            "dataset_id": j.config.dataset_version.dataset.public_id,
            "model_base": j.config.model_base,
            "approach": j.config.approach,
            "metrics": summaries.get(j.pk, {}),
        }
        for j in jobs
    ]


@router.get("/runs/compare", response=CompareOut)
def run_compare(request, job_ids: str):
    """compare 2-10 runs: `job_ids=job-001,job-002`."""
    return selectors.runs_compare(user=request.auth, job_ids=job_ids.split(","))
