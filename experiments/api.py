"""Experiments, training configs and jobs (/api/v1/...). Thin: parse → service/selector → schema."""

from __future__ import annotations

from ninja import Router

from experiments import selectors, services
from experiments.schemas import ConfigIn, ConfigOut, ExperimentIn, ExperimentOut, JobIn, JobOut, SeriesOut
from t4dm_site.auth import trainer_auth

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
        model_base=payload.model_base,
        approach=payload.approach,
        hyperparams=payload.hyperparams,
        template=payload.template,
        experiment=experiment,
        early_stopping=payload.early_stopping.dict() if payload.early_stopping else None,
        checkpointing=payload.checkpointing.dict() if payload.checkpointing else None,
    )
    return 201, selectors.config_to_dict(config)


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
    job = services.job_start(owner=request.auth, config=config, resume_from=payload.resume_from)
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


@router.post("/jobs/{job_id}/cancel", response=JobOut)
def job_cancel(request, job_id: str):
    job = services.job_cancel(job=selectors.job_get(user=request.auth, job_id=job_id))
    return selectors.job_to_dict(job)


@router.get("/jobs/{job_id}/metrics", response=SeriesOut)
def job_metrics(request, job_id: str, after_id: int = 0, max_points: int = 2000):
    job = selectors.job_get(user=request.auth, job_id=job_id)
    return selectors.metric_series(job=job, after_id=after_id, max_points=max(10, min(max_points, 100_000)))
