"""Experiment, config and job services. Endpoints, views, consumers and tasks call these."""

from __future__ import annotations

import json
from pathlib import Path

from django.conf import settings
from django.db import transaction

from datasets_app.models import DatasetVersion
from datasets_app.selectors import dataset_version_latest
from experiments.estimate import count_parameters, estimate_resources
from experiments.live import broadcast_on_commit
from experiments.models import (
    Approach,
    Checkpoint,
    Experiment,
    JobEvent,
    JobStatus,
    TrainingConfig,
    TrainingJob,
)
from t4dm_site.errors import Conflict, InvalidInput, NotFound
from t4dm_site.public_ids import parse_public_id
from t4dm_site.roles import is_admin

TINY_MODEL_NAME = "t4dm-tiny"

# The seed's defaults and its hyperparameter templates.
DEFAULT_HYPERPARAMETERS = {
    "learning_rate": 2e-5,
    "batch_size": 4,
    "gradient_accumulation": 4,
    "epochs": 3,
    "warmup_ratio": 0.1,
    "lora_r": 16,
    "lora_alpha": 32,
    "lora_dropout": 0.1,
    "target_modules": ["q_proj", "v_proj"],
    "max_seq_length": 512,
    "seed": 42,
}
TEMPLATES = {
    "efficient": {
        "learning_rate": 2e-5,
        "batch_size": 4,
        "gradient_accumulation": 8,
        "epochs": 3,
        "lora_r": 8,
        "lora_alpha": 16,
    },
    "quality": {
        "learning_rate": 1e-5,
        "batch_size": 2,
        "gradient_accumulation": 16,
        "epochs": 5,
        "lora_r": 32,
        "lora_alpha": 64,
    },
}
DEFAULT_CHECKPOINTING = {"save_steps": 500, "save_total_limit": 3, "best_only": False}
LOCAL_APPROACHES = {Approach.LORA, Approach.FULL}


def resolve_model_base(model_base: str) -> str:
    return str(settings.TINY_MODEL_DIR) if model_base == TINY_MODEL_NAME else model_base


def experiment_create(*, owner, name: str, notes: str = "", tags: list[str] | None = None) -> Experiment:
    if not name.strip():
        raise InvalidInput("experiment name must not be empty")
    return Experiment.objects.create(owner=owner, name=name.strip(), notes=notes, tags=list(tags or []))


def _hyperparameters(template: str | None, overrides: dict | None) -> dict:
    if template and template not in TEMPLATES:
        raise InvalidInput(f"unknown template {template!r}; choose one of {', '.join(TEMPLATES)}")
    merged = {**DEFAULT_HYPERPARAMETERS, **TEMPLATES.get(template or "", {}), **(overrides or {})}
    unknown = set(merged) - set(DEFAULT_HYPERPARAMETERS) - {"max_steps", "logging_steps"}
    if unknown:
        raise InvalidInput(f"unknown hyperparameter(s): {', '.join(sorted(unknown))}")
    positive = [
        "learning_rate",
        "batch_size",
        "gradient_accumulation",
        "epochs",
        "lora_r",
        "lora_alpha",
        "max_seq_length",
    ]
    for name in positive:
        value = merged[name]
        if not isinstance(value, int | float) or isinstance(value, bool) or value <= 0:
            raise InvalidInput(f"hyperparameter {name} must be a positive number, got {value!r}")
    for name in ("warmup_ratio", "lora_dropout"):
        if not 0 <= merged[name] < 1:
            raise InvalidInput(f"hyperparameter {name} must be in [0, 1), got {merged[name]!r}")
    return merged


def _train_tokens(version: DatasetVersion) -> int:
    stats = version.statistics
    per_row = stats.get("avg_tokens_input", 0) + stats.get("avg_tokens_output", 0)
    return int(per_row * stats.get("train_samples", 0))


def training_config_create(
    *,
    owner,
    dataset_id: str,
    model_base: str,
    approach: str = Approach.LORA,
    hyperparams: dict | None = None,
    template: str | None = None,
    experiment: Experiment | None = None,
    early_stopping: dict | None = None,
    checkpointing: dict | None = None,
) -> TrainingConfig:
    if approach not in Approach.values:
        raise InvalidInput(f"unknown approach {approach!r}; choose one of {', '.join(Approach.values)}")
    if approach not in LOCAL_APPROACHES:
        raise InvalidInput(f"approach {approach!r} is not available on local workers yet; use lora or full")
    version = dataset_version_latest(user=owner, dataset_id=dataset_id)
    hyperparameters = _hyperparameters(template, hyperparams)
    checkpoint_settings = {**DEFAULT_CHECKPOINTING, **(checkpointing or {})}
    estimate = estimate_resources(
        params=count_parameters(resolve_model_base(model_base)),
        approach=approach,
        hyperparameters=hyperparameters,
        train_tokens=_train_tokens(version),
    )
    with transaction.atomic():
        if experiment is None:
            experiment = Experiment.objects.create(
                owner=owner, name=f"{model_base} on {version.dataset.name}"
            )
        return TrainingConfig.objects.create(
            owner=owner,
            experiment=experiment,
            dataset_version=version,
            model_base=model_base,
            approach=approach,
            task_type=version.task_type,
            template=template or "",
            hyperparameters=hyperparameters,
            early_stopping=early_stopping,
            checkpointing=checkpoint_settings,
            estimate=estimate,
        )


def job_event_add(*, job: TrainingJob, message: str, level: str = JobEvent.Level.INFO) -> JobEvent:
    event = JobEvent.objects.create(job=job, message=message, level=level)
    broadcast_on_commit(
        job.pk,
        {"type": "job.log", "event": {"level": level, "message": message, "t": event.created_at.isoformat()}},
    )
    return event


def _broadcast_status(job: TrainingJob) -> None:
    from experiments.selectors import job_to_dict  # selectors import services' models; avoid a cycle

    broadcast_on_commit(job.pk, {"type": "job.status", "job": job_to_dict(job)})


@transaction.atomic
def job_start(*, owner, config: TrainingConfig, resume_from: str | None = None) -> TrainingJob:
    """Create a job and enqueue it for a worker once the transaction commits."""
    from experiments.tasks import train_job

    checkpoint = None
    if resume_from:
        checkpoint = _checkpoint_for_resume(resume_from, owner)
    job = TrainingJob.objects.create(
        owner=owner, config=config, experiment=config.experiment, resume_from=checkpoint
    )
    job.output_dir = str(Path(settings.ARTIFACT_ROOT) / "jobs" / job.public_id)
    job.save(update_fields=["output_dir"])
    token = job.issue_token()
    job.mark_queued()
    job_event_add(job=job, message=f"queued for a worker on queue {settings.CELERY_TASK_DEFAULT_QUEUE!r}")
    transaction.on_commit(lambda: train_job.delay(job.pk, token))
    return job


def _checkpoint_for_resume(resume_from: str, owner) -> Checkpoint:
    """`job-003` (its latest checkpoint) or `job-003/step-40`."""
    job_part, _, step_part = resume_from.partition("/")
    source = TrainingJob.objects.filter(pk=parse_public_id("job", job_part)).first()
    if source is None or (source.owner_id != owner.pk and not is_admin(owner)):
        raise NotFound(f"job {job_part} does not exist")
    checkpoints = source.checkpoints.order_by("-step")
    if step_part:
        if not step_part.startswith("step-") or not step_part[5:].isdigit():
            raise InvalidInput(f"resume_from {resume_from!r}: expected job-001 or job-001/step-40")
        checkpoints = checkpoints.filter(step=int(step_part[5:]))
    checkpoint = checkpoints.first()
    if checkpoint is None:
        raise NotFound(f"no checkpoint to resume from for {resume_from}")
    return checkpoint


@transaction.atomic
def job_cancel(*, job: TrainingJob) -> TrainingJob:
    job = TrainingJob.objects.select_for_update().get(pk=job.pk)
    if job.is_terminal:
        raise Conflict(f"{job.public_id} is already {job.status}")
    if job.status == JobStatus.RUNNING:
        job.request_cancel()
        job_event_add(job=job, message="cancel requested; the worker stops at its next step")
    else:
        job.mark_cancelled()
        job_event_add(job=job, message="cancelled before a worker started it")
    _broadcast_status(job)
    return job


# --- the worker side: called from the job-token endpoints -------------------------------------------


def job_spec_for_worker(*, job: TrainingJob) -> dict:
    """The resolved config a worker needs to train, with absolute paths on shared storage."""
    if job.is_terminal:
        raise Conflict(f"{job.public_id} is {job.status}; there is nothing to run", code="job_finished")
    config = job.config
    version = config.dataset_version
    folder = Path(version.path)
    resume = job.resume_from.path if job.resume_from else None
    # A redelivered job (its worker died) resumes from its own newest checkpoint that still exists.
    own = [c for c in job.checkpoints.order_by("-step") if Path(c.path).exists()]
    if own:
        resume = own[0].path
    return {
        "job_id": job.public_id,
        "model_base": resolve_model_base(config.model_base),
        "approach": config.approach,
        "task_type": config.task_type,
        "hyperparameters": config.hyperparameters,
        "early_stopping": config.early_stopping,
        "checkpointing": config.checkpointing,
        "dataset": {
            "train": str(folder / version.splits["train"]["file"]),
            "validation": str(folder / version.splits["validation"]["file"])
            if version.splits.get("validation", {}).get("rows")
            else None,
        },
        "output_dir": job.output_dir,
        "resume_from_checkpoint": resume,
    }


@transaction.atomic
def job_report_status(
    *,
    job: TrainingJob,
    status: str,
    worker: str = "",
    error: str = "",
    final_model_path: str = "",
    result: dict | None = None,
) -> TrainingJob:
    job = TrainingJob.objects.select_for_update().get(pk=job.pk)
    if job.is_terminal:
        raise Conflict(f"{job.public_id} is already {job.status}", code="job_finished")
    if status == JobStatus.RUNNING:
        if job.step:
            job_event_add(
                job=job, message=f"worker {worker} resumed the job from step {job.step}", level="warning"
            )
        else:
            job_event_add(job=job, message=f"worker {worker} started training")
        job.mark_running(worker=worker)
    elif status == JobStatus.SUCCEEDED:
        job.mark_succeeded(final_model_path=final_model_path)
        job_event_add(job=job, message=f"succeeded: {json.dumps(result or {})}")
    elif status == JobStatus.FAILED:
        job.mark_failed(error=error or "the worker reported a failure without a message")
        job_event_add(job=job, message=f"failed: {job.error}", level="error")
    elif status == JobStatus.CANCELLED:
        job.mark_cancelled()
        job_event_add(job=job, message="cancelled by request; the worker stopped")
    else:
        raise InvalidInput(f"a worker cannot set status {status!r}")
    _broadcast_status(job)
    return job


def job_report_progress(*, job: TrainingJob, step: int, total_steps: int, epoch: float) -> TrainingJob:
    if job.is_terminal:
        raise Conflict(f"{job.public_id} is already {job.status}", code="job_finished")
    job.record_progress(step=step, total_steps=total_steps, epoch=epoch)
    _broadcast_status(job)
    return job


@transaction.atomic
def checkpoint_record(*, job: TrainingJob, step: int, path: str, metrics: dict) -> Checkpoint:
    checkpoint, _ = Checkpoint.objects.update_or_create(
        job=job, step=step, defaults={"path": path, "metrics": metrics}
    )
    job_event_add(job=job, message=f"checkpoint saved at step {step}")
    return checkpoint
