"""Experiment, config and job services. Endpoints, views, consumers and tasks call these."""

from __future__ import annotations

import importlib.util
import json
from datetime import datetime, timedelta
from pathlib import Path

from django.conf import settings
from django.db import transaction
from django.db.models import Max
from django.utils import timezone

from datasets_app.models import DatasetVersion
from datasets_app.selectors import dataset_version_latest
from experiments.estimate import estimate_for
from experiments.live import broadcast_on_commit
from experiments.models import (
    Approach,
    Checkpoint,
    Experiment,
    JobEvent,
    JobStatus,
    TrainingConfig,
    TrainingJob,
    Worker,
    WorkerStatus,
)
from experiments.training import spec as training_spec
from t4dm_site import finetune_config
from t4dm_site.errors import Conflict, InvalidInput, NotFound
from t4dm_site.public_ids import parse_public_id
from t4dm_site.roles import is_admin

TINY_MODEL_NAME = "t4dm-tiny"

# The seed's defaults (experiments/training/spec.py, shared with the engine) and its templates.
DEFAULT_HYPERPARAMETERS = training_spec.seed_defaults()
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
DEFAULT_CHECKPOINTING = training_spec.Checkpointing().to_dict()
DEFAULT_EARLY_STOPPING = training_spec.EarlyStopping().to_dict()
EARLY_STOPPING_METRICS = ("val_loss", "val_accuracy")
# Accepted besides the seed's hyperparameters; left out of a config unless given.
OPTIONAL_HYPERPARAMETERS = set(training_spec.OPTIONAL_HYPERPARAMETERS)
DEVICES = training_spec.DEVICES
LOCAL_APPROACHES = {Approach.LORA, Approach.FULL, Approach.QLORA, Approach.PROMPT_TUNING}
ADAPTER_APPROACHES = {Approach.LORA, Approach.QLORA}
MINILM_NAME = "all-minilm-l6-v2"
# LoRA targets tried in order when a config names none and the model has no q_proj/v_proj.
TARGET_MODULE_DEFAULTS = (["q_proj", "v_proj"], ["query", "value"], ["c_attn"], ["qkv_proj"])


def resolve_model_base(model_base: str, *, user) -> str:
    """A config's base model as ``user`` may use it (experiments.model_refs: one resolver, one refusal)."""
    from experiments.model_refs import base_model_resolve

    return base_model_resolve(user=user, name=model_base)


def experiment_create(*, owner, name: str, notes: str = "", tags: list[str] | None = None) -> Experiment:
    if not name.strip():
        raise InvalidInput("experiment name must not be empty")
    return Experiment.objects.create(owner=owner, name=name.strip(), notes=notes, tags=list(tags or []))


def default_hyperparameters() -> dict:
    """DEFAULT_HYPERPARAMETERS with the finetune configuration file's `lora:` and `training:` values.
    training.max_epochs caps the default epochs (3, as the seed's configure_training shows); a config
    that turns early stopping on trains up to max_epochs by default (see training_config_create)."""
    config = finetune_config.effective().values
    lora, training = config["lora"], config["training"]
    return {
        **DEFAULT_HYPERPARAMETERS,
        "learning_rate": training["learning_rate"],
        "batch_size": training["batch_size"],
        "gradient_accumulation": training["gradient_accumulation"],
        "epochs": min(DEFAULT_HYPERPARAMETERS["epochs"], training["max_epochs"]),
        "lora_r": lora["r"],
        "lora_alpha": lora["alpha"],
        "lora_dropout": lora["dropout"],
        "target_modules": list(lora["target_modules"]),
    }


def default_approach() -> str:
    return finetune_config.effective().values["default_approach"]


def _spec_checked(check):
    """Run a check of experiments/training/spec.py; its SpecError becomes a 400 naming the field."""
    try:
        return check()
    except training_spec.SpecError as exc:
        raise InvalidInput(str(exc), details={"param": exc.field}) from exc


def hyperparameters_resolve(
    template: str | None, overrides: dict | None, *, approach: str | None = None, task_type: str = "chat"
) -> dict:
    """Defaults, then the template, then the overrides, checked by the training spec (the engine runs
    the same checks). Returns the dict a config stores: the seed's keys and the optional ones given."""
    if template and template not in TEMPLATES:
        raise InvalidInput(f"unknown template {template!r}; choose one of {', '.join(TEMPLATES)}")
    if overrides is not None and not isinstance(overrides, dict):
        raise InvalidInput("hyperparameters: must be an object", details={"param": "hyperparameters"})
    merged = {**default_hyperparameters(), **TEMPLATES.get(template or "", {}), **(overrides or {})}
    _spec_checked(
        lambda: training_spec.Hyperparameters.from_dict(
            merged, approach=approach or default_approach(), task_type=task_type
        )
    )
    return merged


def _model_linear_names(model_base: str, task_type: str) -> list[str] | None:
    """The Linear layer names of a local or known-shape model; None when its shape is unknown."""
    from experiments.estimate import _shape

    key = str(Path(model_base).resolve()) if (Path(model_base) / "config.json").is_file() else model_base
    try:
        shape = _shape(key, "classification" if task_type == "classification" else "chat")
    except (OSError, ValueError, KeyError) as exc:
        raise InvalidInput(f"model_base {model_base!r}: cannot read its config ({exc})") from exc
    return sorted(shape.linear_in_out) if shape else None


def _check_model_limits(model_base: str, hyperparameters: dict) -> None:
    """Limits that depend on the model (max_seq_length vs its positions), from a local model's
    config.json; a hub id we cannot read here is checked by the worker when it loads the model."""
    model_config = _spec_checked(lambda: training_spec.model_config_read(model_base))
    _spec_checked(
        lambda: training_spec.check_model_limits(
            max_seq_length=hyperparameters["max_seq_length"],
            model_config=model_config,
            model_name=Path(model_base).name,
        )
    )


def _check_approach(
    *, approach: str, model_base: str, task_type: str, hyperparameters: dict, targets_given: bool
) -> dict:
    """Approach vs model and hardware; returns the hyperparameters with LoRA targets resolved."""
    if approach not in Approach.values:
        raise InvalidInput(f"unknown approach {approach!r}; choose one of {', '.join(Approach.values)}")
    if approach not in LOCAL_APPROACHES:
        raise InvalidInput(
            f"approach {approach!r} is not available on local workers; use lora, qlora, full or prompt_tuning"
        )
    if approach == Approach.QLORA and importlib.util.find_spec("bitsandbytes") is None:
        raise InvalidInput("approach qlora needs the bitsandbytes package (pip install bitsandbytes)")
    _check_model_limits(model_base, hyperparameters)
    if approach not in ADAPTER_APPROACHES:
        return hyperparameters
    names = _model_linear_names(model_base, task_type)
    if names is None:  # a hub id we cannot inspect here: the worker checks when it loads the model
        return hyperparameters
    if not targets_given:
        for candidate in (default_hyperparameters()["target_modules"], *TARGET_MODULE_DEFAULTS):
            if all(m in names for m in candidate):
                return {**hyperparameters, "target_modules": list(candidate)}
    missing = [m for m in hyperparameters["target_modules"] if m not in names]
    if missing:
        raise InvalidInput(
            f"hyperparameter target_modules: {', '.join(missing)} not in {model_base}; "
            f"choose from {', '.join(names)}"
        )
    return hyperparameters


def _early_stopping(value: dict | None, *, task_type: str, has_validation: bool) -> dict | None:
    if not value:
        return None
    if not isinstance(value, dict):
        raise InvalidInput("early_stopping: must be an object", details={"param": "early_stopping"})
    patience = finetune_config.effective().values["training"]["early_stopping_patience"]
    settings_ = _spec_checked(
        lambda: training_spec.EarlyStopping.from_dict({"patience": patience, **value}, task_type=task_type)
    )
    _spec_checked(
        lambda: training_spec.check_validation_needs(
            training_spec.Checkpointing(), settings_, has_validation=has_validation
        )
    )
    return settings_.to_dict()


def _checkpointing(value: dict | None, *, has_validation: bool) -> dict:
    if value is not None and not isinstance(value, dict):
        raise InvalidInput("checkpointing: must be an object", details={"param": "checkpointing"})
    merged = {**finetune_config.effective().values["checkpointing"], **(value or {})}
    settings_ = _spec_checked(lambda: training_spec.Checkpointing.from_dict(merged))
    _spec_checked(lambda: training_spec.check_validation_needs(settings_, None, has_validation=has_validation))
    return settings_.to_dict()


def _has_validation(version: DatasetVersion) -> bool:
    return bool((version.splits or {}).get("validation", {}).get("rows"))


def _queue(queue: str | None) -> str:
    if not queue:
        return ""
    if queue not in settings.TRAINING_QUEUES:
        raise InvalidInput(f"unknown queue {queue!r}; choose one of {', '.join(settings.TRAINING_QUEUES)}")
    return queue


def _train_tokens(version: DatasetVersion) -> int:
    stats = version.statistics
    per_row = stats.get("avg_tokens_input", 0) + stats.get("avg_tokens_output", 0)
    return int(per_row * stats.get("train_samples", 0))


def training_config_create(
    *,
    owner,
    dataset_id: str,
    model_base: str,
    approach: str | None = None,
    hyperparams: dict | None = None,
    template: str | None = None,
    experiment: Experiment | None = None,
    early_stopping: dict | None = None,
    checkpointing: dict | None = None,
    queue: str | None = None,
) -> TrainingConfig:
    """configure_training: resolve defaults and a template, validate against the model and the
    hardware, estimate resources, store."""
    approach = approach or default_approach()
    version = dataset_version_latest(user=owner, dataset_id=dataset_id)
    if version.task_type == "preference":
        raise InvalidInput(
            f"{dataset_id} is a preference dataset (prompt/chosen/rejected): preference tuning (DPO) is not "
            "available yet; train on a chat, instruction, completion or classification dataset"
        )
    base_path = resolve_model_base(model_base, user=owner)
    hyperparameters = hyperparameters_resolve(
        template, hyperparams, approach=approach, task_type=version.task_type
    )
    hyperparameters = _check_approach(
        approach=approach,
        model_base=base_path,
        task_type=version.task_type,
        hyperparameters=hyperparameters,
        targets_given="target_modules" in (hyperparams or {}),
    )
    has_validation = _has_validation(version)
    early_stopping = _early_stopping(
        early_stopping, task_type=version.task_type, has_validation=has_validation
    )
    epochs_given = "epochs" in (hyperparams or {}) or "epochs" in TEMPLATES.get(template or "", {})
    if early_stopping and not epochs_given:
        # With early stopping on, training runs up to the file's max_epochs unless it stops sooner.
        hyperparameters["epochs"] = finetune_config.effective().values["training"]["max_epochs"]
    checkpoint_settings = _checkpointing(checkpointing, has_validation=has_validation)
    estimate = estimate_for(
        model_base=base_path,
        task_type=version.task_type,
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
            queue=_queue(queue),
        )


def resource_estimate(
    *,
    owner,
    model_base: str,
    approach: str | None = None,
    hyperparams: dict | None = None,
    template: str | None = None,
    dataset_id: str | None = None,
    task_type: str = "chat",
) -> dict:
    """estimate_resources for a config that is not stored yet (the config form's live estimate)."""
    if not model_base.strip():
        raise InvalidInput("pick a base model")
    approach = approach or default_approach()
    train_tokens = 0
    if dataset_id:
        version = dataset_version_latest(user=owner, dataset_id=dataset_id)
        train_tokens, task_type = _train_tokens(version), version.task_type
    base_path = resolve_model_base(model_base, user=owner)
    hyperparameters = hyperparameters_resolve(template, hyperparams, approach=approach, task_type=task_type)
    hyperparameters = _check_approach(
        approach=approach,
        model_base=base_path,
        task_type=task_type,
        hyperparameters=hyperparameters,
        targets_given="target_modules" in (hyperparams or {}),
    )
    return estimate_for(
        model_base=base_path,
        task_type=task_type,
        approach=approach,
        hyperparameters=hyperparameters,
        train_tokens=train_tokens,
    )


@transaction.atomic
def training_config_set_early_stopping(
    *, config: TrainingConfig, patience: int | None = None, min_delta: float = 0.01, metric: str = "val_loss"
) -> TrainingConfig:
    """configure_early_stopping for a config; jobs started afterwards use it (patience: the finetune
    configuration file's training.early_stopping_patience unless given)."""
    given = {"patience": patience} if patience is not None else {}
    config.early_stopping = _early_stopping(
        {**given, "min_delta": min_delta, "metric": metric},
        task_type=config.task_type,
        has_validation=_has_validation(config.dataset_version),
    )
    config.save(update_fields=["early_stopping"])
    return config


@transaction.atomic
def training_config_set_checkpointing(
    *,
    config: TrainingConfig,
    save_steps: int | None = None,
    save_total_limit: int | None = None,
    best_only: bool = False,
) -> TrainingConfig:
    """configure_checkpoints for a config; jobs started afterwards use it (unset values: the finetune
    configuration file's checkpointing block)."""
    given = {"save_steps": save_steps, "save_total_limit": save_total_limit}
    config.checkpointing = _checkpointing(
        {**{k: v for k, v in given.items() if v is not None}, "best_only": best_only},
        has_validation=_has_validation(config.dataset_version),
    )
    config.save(update_fields=["checkpointing"])
    return config


def job_resume(*, owner, job: TrainingJob, step: int | None = None) -> TrainingJob:
    """A new job of the same config, starting from one of ``job``'s checkpoints (its newest by default)."""
    if job.status in (JobStatus.RUNNING, JobStatus.QUEUED, JobStatus.VALIDATING):
        raise Conflict(f"{job.public_id} is {job.status}; cancel it before resuming from its checkpoint")
    resume_from = f"{job.public_id}/step-{step}" if step is not None else job.public_id
    return job_start(owner=owner, config=job.config, resume_from=resume_from)


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
    job_event_add(job=job, message=f"queued for a worker on queue {job_queue(job)!r}")
    _enqueue_on_commit(job, token)
    _emit_job_event(job)
    return job


def job_queue(job: TrainingJob) -> str:
    return job.config.queue or settings.CELERY_TASK_DEFAULT_QUEUE


def _enqueue_on_commit(job: TrainingJob, token: str) -> None:
    from experiments.tasks import train_job

    queue = job_queue(job)
    transaction.on_commit(lambda: train_job.apply_async((job.pk, token), queue=queue))


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
    if not checkpoints.exists():
        raise NotFound(f"no checkpoint to resume from for {resume_from}")
    # A recorded checkpoint may be gone from disk (save_total_limit rotated it away, or it was cleaned
    # up): refuse it now rather than queue a job that fails on its worker. Without a step, the newest
    # checkpoint still on disk.
    checkpoint = next((c for c in checkpoints if _checkpoint_on_disk(c.path)), None)
    if checkpoint is None:
        on_disk = sorted(c.step for c in source.checkpoints.all() if _checkpoint_on_disk(c.path))
        raise Conflict(
            f"the checkpoint for {resume_from} is no longer on disk (rotated away by save_total_limit or "
            f"deleted); steps still on disk: {', '.join(map(str, on_disk)) or 'none'}",
            code="checkpoint_deleted",
            details={"steps_on_disk": on_disk},
        )
    return checkpoint


def _checkpoint_on_disk(path: str) -> bool:
    """A checkpoint folder that exists and holds files (the engine renames it into place complete)."""
    folder = Path(path) if path else None
    if folder is None or not folder.is_dir():
        return False
    return any(folder.iterdir())


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
        _emit_job_event(job)
        _workflow_continue_on_commit(job)
    _broadcast_status(job)
    return job


# --- the worker side: called from the job-token endpoints -------------------------------------------


def _newest_own_checkpoint(job: TrainingJob) -> tuple[int, str] | None:
    """(step, path) of the checkpoint a redelivered job resumes from: the newest one on disk that is
    not past the last step whose metrics the platform holds, so the resumed run leaves no gap in the
    series (steps it trains again are already stored, and ingest keeps the first copy).

    Candidates are the checkpoints its worker reported and any `checkpoint-N` folder in its output
    folder (the engine renames a checkpoint into place only once complete): a worker declared lost
    that kept running for a moment may have saved newer ones, with its reports (and that run's
    metrics) refused, and rotated the reported ones away."""
    last_step = job.metric_points.aggregate(last=Max("step"))["last"]
    if last_step is None:
        return None
    found = {c.step: c.path for c in job.checkpoints.all() if Path(c.path).is_dir()}
    if job.output_dir and Path(job.output_dir).is_dir():
        for folder in Path(job.output_dir).glob("checkpoint-*"):
            number = folder.name.removeprefix("checkpoint-")
            if number.isdigit() and folder.is_dir():
                found.setdefault(int(number), str(folder))
    usable = [step for step in found if step <= last_step]
    if not usable:
        return None
    return max(usable), found[max(usable)]


def job_spec_for_worker(*, job: TrainingJob) -> dict:
    """The resolved config a worker needs to train, with absolute paths on shared storage."""
    if job.is_terminal:
        raise Conflict(f"{job.public_id} is {job.status}; there is nothing to run", code="job_finished")
    config = job.config
    version = config.dataset_version
    folder = Path(version.path)
    resume = job.resume_from.path if job.resume_from else None
    # A redelivered job (its worker died or was declared lost) resumes from its own newest checkpoint.
    newest = _newest_own_checkpoint(job)
    if newest:
        resume = newest[1]
    return {
        "job_id": job.public_id,
        # Resolved again for the job's owner: a config stored before the resolver existed cannot
        # train on a folder its owner may not use.
        "model_base": resolve_model_base(config.model_base, user=job.owner),
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
        # The running attempt: the worker raises the job folder's fence to it and checks it before
        # every write (experiments/training/checkpoints.py), so a superseded run writes nothing.
        "attempt": job.attempt,
        "resume_from_checkpoint": resume,
        # What a worker checks before taking the job (worker.refusal_reason): GPU memory per GPU from
        # the config's estimate, and the number of GPUs.
        "resources": {
            "gpu_memory_mb": (config.estimate or {}).get("gpu_memory_mb"),
            "gpus": int(config.hyperparameters.get("gpus") or 1),
        },
    }


REFUSED_PREFIX = "refused by "


@transaction.atomic
def job_refuse(*, job: TrainingJob, worker: str, reason: str) -> dict:
    """A worker that cannot run the job (too little GPU memory, too few GPUs) hands it back: it is
    queued again for another worker, up to JOB_MAX_REFUSALS times, then failed with the reason."""
    if not reason.strip():
        raise InvalidInput("reason: say why this worker cannot run the job")
    job = TrainingJob.objects.select_for_update().get(pk=job.pk)
    if job.status != JobStatus.QUEUED:
        raise Conflict(f"{job.public_id} is {job.status}; only a queued job can be refused", code="not_queued")
    refusals = job.events.filter(message__startswith=REFUSED_PREFIX).count() + 1
    job_event_add(job=job, level=JobEvent.Level.WARNING, message=f"{REFUSED_PREFIX}{worker or 'a worker'}: {reason}")
    if refusals < settings.JOB_MAX_REFUSALS:
        token = job.issue_token()
        job.mark_queued()
        _enqueue_on_commit(job, token)
        _broadcast_status(job)
        return {"requeued": True, "refusals": refusals}
    job.mark_failed(error=f"no worker could take it after {refusals} refusals; last: {reason}")
    job_event_add(job=job, level=JobEvent.Level.ERROR, message=f"failed: {job.error}")
    _broadcast_status(job)
    _emit_job_event(job)
    _workflow_continue_on_commit(job)
    return {"requeued": False, "refusals": refusals}


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
            newest = _newest_own_checkpoint(job)
            start = f"its checkpoint at step {newest[0]}" if newest else "the start (no checkpoint left)"
            job_event_add(
                job=job,
                message=f"worker {worker} resumed the job (interrupted at step {job.step}) from {start}",
                level="warning",
            )
        else:
            job_event_add(job=job, message=f"worker {worker} started training")
        job.mark_running(worker=worker)
    elif status == JobStatus.SUCCEEDED:
        job.mark_succeeded(final_model_path=final_model_path)
        job_event_add(job=job, message=f"succeeded: {json.dumps(result or {})}")
        best = (result or {}).get("best_checkpoint")
        if best:  # the Trainer's best checkpoint by the early-stopping / best_only metric
            Checkpoint.objects.filter(job=job).update(is_best=False)
            Checkpoint.objects.filter(job=job, path=best).update(is_best=True)
        # auto_version: the registry records a version once the success is committed; a registry
        # error is logged and never fails the worker's status report (robust=True).
        from models_registry.services import model_version_auto_create

        transaction.on_commit(lambda: model_version_auto_create(job=job), robust=True)
    elif status == JobStatus.FAILED:
        job.mark_failed(error=error or "the worker reported a failure without a message")
        job_event_add(job=job, message=f"failed: {job.error}", level="error")
    elif status == JobStatus.CANCELLED:
        job.mark_cancelled()
        job_event_add(job=job, message="cancelled by request; the worker stopped")
    else:
        raise InvalidInput(f"a worker cannot set status {status!r}")
    _broadcast_status(job)
    _emit_job_event(job)
    _workflow_continue_on_commit(job, result)
    return job


def _workflow_continue_on_commit(job: TrainingJob, result: dict | None = None) -> None:
    """A workflow whose train step waits on this job continues once its end is committed (after the
    auto_version hook above, so the version exists by then)."""
    if job.is_terminal:
        from experiments.workflows.services import workflow_job_finished

        job_pk = job.pk
        transaction.on_commit(lambda: workflow_job_finished(job_pk=job_pk, result=result), robust=True)


def _emit_job_event(job: TrainingJob) -> None:
    """Webhooks: job.queued / running / succeeded / failed / cancelled (after commit)."""
    from experiments.integrations.events import emit
    from experiments.selectors import job_to_dict

    emit(f"job.{job.status}", {"job": job_to_dict(job)})


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
    broadcast_on_commit(
        job.pk,
        {
            "type": "job.checkpoint",
            "checkpoint": {
                "step": step,
                "loss": metrics.get("loss"),
                "val_loss": metrics.get("val_loss"),
                "model_path": f"{job.public_id}/step-{step}",
            },
        },
    )
    return checkpoint


# --- workers: heartbeats and lost jobs --------------------------------------------------------------


@transaction.atomic
def worker_heartbeat(
    *,
    name: str,
    queue: str = "",
    hostname: str = "",
    gpu_name: str = "",
    gpu_count: int = 0,
    gpu_memory_total_mb: int | None = None,
    gpu_memory_free_mb: int | None = None,
    current_job_id: str | None = None,
    started_at: datetime | None = None,
) -> Worker:
    """Record a worker's heartbeat; it also keeps the job it is running from being reaped as lost
    (a long model load or a slow step sends no progress, but the worker's heartbeat goes on)."""
    if not name.strip():
        raise InvalidInput("worker name must not be empty")
    now = timezone.now()
    job = None
    if current_job_id:
        job = TrainingJob.objects.filter(pk=parse_public_id("job", current_job_id)).first()
    defaults = {
        "queue": queue,
        "hostname": hostname,
        "gpu_name": gpu_name,
        "gpu_count": gpu_count,
        "gpu_memory_total_mb": gpu_memory_total_mb,
        "gpu_memory_free_mb": gpu_memory_free_mb,
        "current_job": job,
        "status": WorkerStatus.BUSY if job else WorkerStatus.IDLE,
        "last_heartbeat_at": now,
    }
    worker, created = Worker.objects.update_or_create(
        name=name.strip(), defaults=defaults, create_defaults={**defaults, "started_at": started_at or now}
    )
    if not created and started_at and worker.started_at != started_at:
        worker.started_at = started_at  # the worker restarted under the same name
        worker.save(update_fields=["started_at"])
        # Whatever it was running before it restarted (killed, crashed, OOM-killed) is lost: requeue
        # it now instead of waiting HEARTBEAT_TIMEOUT for its heartbeats to be missed.
        orphans = (
            TrainingJob.objects.select_for_update()
            .filter(status=JobStatus.RUNNING, worker=worker.name, heartbeat_at__lt=started_at)
            .exclude(pk=job.pk if job is not None else None)
        )
        for orphan in orphans.select_related("config"):
            _job_lost(orphan, reason=f"{worker.name} restarted while running it")
    if job is not None and job.status == JobStatus.RUNNING and job.worker == worker.name:
        TrainingJob.objects.filter(pk=job.pk).update(heartbeat_at=now)
    return worker


@transaction.atomic
def jobs_reap_lost(*, now: datetime | None = None) -> list[TrainingJob]:
    """Mark workers and running jobs whose heartbeats stopped for HEARTBEAT_TIMEOUT seconds as lost.

    A lost job is requeued (a new attempt with a new token, so a late report from the old worker is
    refused with 409 and its checkpoint writes are fenced off; the next worker resumes from the job's
    newest checkpoint) up to LOST_JOB_MAX_REQUEUES times, or failed when
    the policy says so. Returns the jobs it changed.
    """
    now = now or timezone.now()
    cutoff = now - timedelta(seconds=settings.HEARTBEAT_TIMEOUT)
    for worker in (
        Worker.objects.select_for_update()
        .filter(last_heartbeat_at__lt=cutoff)
        .exclude(status=WorkerStatus.LOST)
    ):
        worker.mark_lost()
    changed = []
    stale = TrainingJob.objects.select_for_update().filter(status=JobStatus.RUNNING, heartbeat_at__lt=cutoff)
    for job in stale.select_related("config"):
        silent = int((now - job.heartbeat_at).total_seconds())
        _job_lost(job, reason=f"{job.worker or 'its worker'} sent no heartbeat for {silent} s")
        changed.append(job)
    return changed


def _job_lost(job: TrainingJob, *, reason: str) -> None:
    """A running job whose worker is gone: requeue it (LOST_JOB_POLICY=requeue, up to
    LOST_JOB_MAX_REQUEUES times; it resumes from its newest recorded checkpoint) or fail it."""
    if settings.LOST_JOB_POLICY == "requeue" and job.lost_count < settings.LOST_JOB_MAX_REQUEUES:
        token = job.issue_token()
        job.mark_lost_and_requeued()
        job_event_add(
            job=job,
            level=JobEvent.Level.WARNING,
            message=f"lost: {reason}; requeued on {job_queue(job)!r} "
            f"(attempt {job.lost_count + 1}), it resumes from its last checkpoint",
        )
        _enqueue_on_commit(job, token)
    else:
        job.mark_failed(error=f"lost: {reason}")
        job_event_add(job=job, level=JobEvent.Level.ERROR, message=f"failed: {job.error}")
    _broadcast_status(job)
    _emit_job_event(job)
    _workflow_continue_on_commit(job)
