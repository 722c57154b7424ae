"""Read-side queries and the seed-shaped representations of jobs and configs."""

from __future__ import annotations

from collections import defaultdict

from django.db.models import QuerySet

from experiments.models import Experiment, MetricPoint, TrainingConfig, TrainingJob
from t4dm_site.errors import NotFound
from t4dm_site.public_ids import parse_public_id
from t4dm_site.roles import is_admin


def _visible(queryset: QuerySet, user) -> QuerySet:
    """Sharing rule: owners see their own records; admins see everyone's."""
    return queryset if is_admin(user) else queryset.filter(owner=user)


def experiments_visible_to(user) -> QuerySet[Experiment]:
    return _visible(Experiment.objects.all(), user)


def configs_visible_to(user) -> QuerySet[TrainingConfig]:
    return _visible(TrainingConfig.objects.select_related("dataset_version__dataset", "experiment"), user)


def jobs_visible_to(user) -> QuerySet[TrainingJob]:
    return _visible(TrainingJob.objects.select_related("config", "experiment"), user)


def _get(queryset: QuerySet, prefix: str, public_id: str, noun: str):
    # Someone else's record answers 404 like a missing one, so ids do not leak what exists.
    obj = queryset.filter(pk=parse_public_id(prefix, public_id)).first()
    if obj is None:
        raise NotFound(f"{noun} {public_id} does not exist")
    return obj


def experiment_get(*, user, experiment_id: str) -> Experiment:
    return _get(experiments_visible_to(user), "exp", experiment_id, "experiment")


def config_get(*, user, config_id: str) -> TrainingConfig:
    return _get(configs_visible_to(user), "cfg", config_id, "config")


def job_get(*, user, job_id: str) -> TrainingJob:
    return _get(jobs_visible_to(user), "job", job_id, "job")


def job_to_dict(job: TrainingJob) -> dict:
    """The seed's start_training / monitor_training shape, plus a few fields a UI needs."""
    metrics = job.latest_metrics or {}
    return {
        "job_id": job.public_id,
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
        "experiment_id": config.experiment.public_id,
        "estimate": estimate,
        "early_stopping": config.early_stopping,
        "checkpointing": config.checkpointing,
    }


def _downsample(
    points: list[tuple[int, int, float, float]], max_points: int
) -> list[tuple[int, int, float, float]]:
    """Keep min, max and last of each step bucket, so spikes survive and the curve ends where it ends."""
    if len(points) <= max_points:
        return points
    buckets = max(1, max_points // 3)
    size = -(-len(points) // buckets)
    kept: list[tuple[int, int, float, float]] = []
    for start in range(0, len(points), size):
        chunk = points[start : start + size]
        picks = {min(chunk, key=lambda p: p[2]), max(chunk, key=lambda p: p[2]), chunk[-1]}
        kept.extend(sorted(picks, key=lambda p: p[1]))
    return kept


def metric_series(*, job: TrainingJob, after_id: int = 0, max_points: int = 2000) -> dict:
    """Points of every series of a job with id > after_id, as {key: [[step, value, t], ...]}, and the
    highest id included (the cursor a client resumes from)."""
    rows = (
        MetricPoint.objects.filter(job=job, id__gt=after_id)
        .order_by("key", "step")
        .values_list("id", "key", "step", "value", "wall_time")
    )
    by_key: dict[str, list[tuple[int, int, float, float]]] = defaultdict(list)
    last_id = after_id
    for point_id, key, step, value, wall_time in rows:
        by_key[key].append((point_id, step, value, wall_time))
        last_id = max(last_id, point_id)
    series = {
        key: [[step, value, t] for _, step, value, t in _downsample(points, max_points)]
        for key, points in by_key.items()
    }
    return {
        "series": series,
        "last_id": last_id,
        "downsampled": any(len(p) > max_points for p in by_key.values()),
    }
