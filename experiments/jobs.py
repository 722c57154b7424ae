"""The training job's lifecycle: start, resume, cancel; the worker side (its spec, status reports,
progress, checkpoints, refusals); lost jobs. Every status change goes through ``job_transition``, the
only caller of TrainingJob.mark_*, which publishes JobStatusChanged: webhooks, the live status, the
registry's auto_version and a waiting workflow are its subscribers (t4dm_site.events.SUBSCRIBERS), so a
job has the same effects whichever path ended it (a worker, a cancel, a refusal, a lost worker, an
MLflow client, an OpenAI fine-tuning job)."""

from __future__ import annotations

from datetime import datetime, timedelta
from pathlib import Path

from django.conf import settings
from django.db import transaction
from django.db.models import Max
from django.utils import timezone

from experiments.live import broadcast_on_commit
from experiments.model_refs import base_model_resolve
from experiments.models import (
    Checkpoint,
    JobEvent,
    JobStatus,
    TrainingConfig,
    TrainingJob,
    Worker,
    WorkerStatus,
)
from experiments.selectors import job_to_dict
from t4dm_site.errors import Conflict, InvalidInput, NotFound
from t4dm_site.events import JobCancelRequested, JobStatusChanged, publish
from t4dm_site.public_ids import parse_public_id
from t4dm_site.roles import is_admin


def job_transition(*, job: TrainingJob, to: str, result: dict | None = None, **fields) -> TrainingJob:
    """Move ``job`` to status ``to`` and publish JobStatusChanged (its subscribers run after commit).

    ``fields``: ``worker`` (running), ``final_model_path`` (succeeded), ``error`` (failed),
    ``lost=True`` (queued again because its worker is gone). ``result``: the worker's result on
    success, handed to the subscribers (a workflow's train step records it). The caller holds the row
    lock and checks that the move is allowed; a requeue issues the new token first."""
    previous = job.status
    if to == JobStatus.QUEUED:
        if fields.pop("lost", False):
            job.mark_lost_and_requeued()
        else:
            job.mark_queued()
    elif to == JobStatus.RUNNING:
        job.mark_running(worker=fields.pop("worker"))
    elif to == JobStatus.SUCCEEDED:
        job.mark_succeeded(final_model_path=fields.pop("final_model_path", ""))
    elif to == JobStatus.FAILED:
        job.mark_failed(error=fields.pop("error"))
    elif to == JobStatus.CANCELLED:
        job.mark_cancelled()
    else:
        raise InvalidInput(f"a job cannot move to status {to!r}")
    if fields:
        raise TypeError(f"job_transition to {to}: unexpected {', '.join(fields)}")
    publish(JobStatusChanged(job_pk=job.pk, status=job.status, previous=previous, result=result))
    return job


def job_resume(*, owner, job: TrainingJob, step: int | None = None) -> TrainingJob:
    """A new job of the same config, starting from one of ``job``'s checkpoints (its newest by default)."""
    if job.status in (JobStatus.RUNNING, JobStatus.QUEUED, JobStatus.VALIDATING):
        raise Conflict(f"{job.public_id} is {job.status}; cancel it before resuming from its checkpoint")
    resume_from = f"{job.public_id}/step-{step}" if step is not None else job.public_id
    return job_start(owner=owner, config=job.config, resume_from=resume_from, name=job.name, tags=job.tags)


def job_event_add(*, job: TrainingJob, message: str, level: str = JobEvent.Level.INFO) -> JobEvent:
    event = JobEvent.objects.create(job=job, message=message, level=level)
    broadcast_on_commit(
        job.pk,
        {"type": "job.log", "event": {"level": level, "message": message, "t": event.created_at.isoformat()}},
    )
    return event


@transaction.atomic
def job_start(
    *,
    owner,
    config: TrainingConfig,
    resume_from: str | None = None,
    name: str = "",
    tags: list[str] | None = None,
) -> TrainingJob:
    """Create a job (with the run's name and tags, both optional) and enqueue it for a worker once the
    transaction commits."""
    checkpoint = None
    if resume_from:
        checkpoint = _checkpoint_for_resume(resume_from, owner)
    job = TrainingJob.objects.create(
        owner=owner,
        config=config,
        experiment=config.experiment,
        resume_from=checkpoint,
        name=_run_name(name),
        tags=_run_tags(tags),
    )
    job.output_dir = str(Path(settings.ARTIFACT_ROOT) / "jobs" / job.public_id)
    job.save(update_fields=["output_dir"])
    token = job.issue_token()
    job_transition(job=job, to=JobStatus.QUEUED)
    job_event_add(job=job, message=f"queued for a worker on queue {job_queue(job)!r}")
    job_enqueue_on_commit(job, token)
    return job


def job_update(*, job: TrainingJob, name: str | None = None, tags: list[str] | None = None) -> TrainingJob:
    """Rename a run or replace its tags (None: leave that one as it is)."""
    fields = []
    if name is not None:
        job.name = _run_name(name)
        fields.append("name")
    if tags is not None:
        job.tags = _run_tags(tags)
        fields.append("tags")
    if fields:
        job.save(update_fields=fields)
    return job


RUN_NAME_MAX = 200
RUN_TAG_MAX = 50
RUN_TAGS_MAX = 20


def _run_name(name: str | None) -> str:
    name = " ".join((name or "").split())
    if len(name) > RUN_NAME_MAX:
        raise InvalidInput(f"a run name has at most {RUN_NAME_MAX} characters", details={"param": "name"})
    return name


def _run_tags(tags: list[str] | None) -> list[str]:
    """Trimmed, without empties or repeats, in the order given."""
    out: list[str] = []
    for tag in tags or []:
        tag = " ".join(str(tag).split())
        if len(tag) > RUN_TAG_MAX:
            raise InvalidInput(
                f"a tag has at most {RUN_TAG_MAX} characters: {tag[:60]!r}", details={"param": "tags"}
            )
        if tag and tag not in out:
            out.append(tag)
    if len(out) > RUN_TAGS_MAX:
        raise InvalidInput(f"a run has at most {RUN_TAGS_MAX} tags", details={"param": "tags"})
    return out


def job_queue(job: TrainingJob) -> str:
    return job.config.queue or settings.CELERY_TASK_DEFAULT_QUEUE


def job_enqueue_on_commit(job: TrainingJob, token: str) -> None:
    """Queue the job's training message(s) once the surrounding transaction commits."""
    from experiments.tasks import train_job

    queue = job_queue(job)
    # A multi-node job (`nodes: M`) is M messages, one per node; node 0 claims it and publishes the
    # rendezvous endpoint, the others join (experiments/training/rendezvous.py).
    nodes = int((job.config.hyperparameters or {}).get("nodes") or 1)

    def send() -> None:
        train_job.apply_async((job.pk, token), queue=queue)
        for node in range(1, nodes):
            train_job.apply_async((job.pk, token), {"node": node}, queue=queue)

    transaction.on_commit(send)


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
        publish(JobCancelRequested(job_pk=job.pk))
    else:
        job_transition(job=job, to=JobStatus.CANCELLED)
        job_event_add(job=job, message="cancelled before a worker started it")
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
    if "train" not in (version.splits or {}):
        # A tracking-only run (MLflow client, T4DMCallback) has no training data: nothing to train.
        raise Conflict(
            f"{job.public_id} has no training data (a tracking-only run): there is nothing for a worker to train",
            code="no_training_data",
        )
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
        "model_base": base_model_resolve(user=job.owner, name=config.model_base),
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
        # A multi-node job: the endpoint its first node published for this attempt (None until then).
        "rendezvous": (job.rendezvous or {}).get("endpoint")
        if (job.rendezvous or {}).get("attempt") == job.attempt
        else None,
        # What a worker checks before taking the job (worker.refusal_reason): GPU memory per GPU from
        # the config's estimate, and the number of GPUs.
        "resources": _worker_resources(config),
    }


def _worker_resources(config: TrainingConfig) -> dict:
    """GPU memory per GPU and GPU count a worker checks before taking the job. When no single GPU
    holds it and the plan shards it (FSDP2 over `gpus` GPUs), the per-GPU share of the sharded plan,
    with `sharding: fsdp` so the engine shards."""
    estimate = config.estimate or {}
    gpus = int(config.hyperparameters.get("gpus") or 1)
    plan = estimate.get("plan") or {}
    sharded = plan.get("sharded") if not plan.get("fits", True) else None
    wants = config.hyperparameters.get("sharding")
    if sharded and wants != "none" and gpus >= int(sharded["gpu_count"]):
        return {"gpu_memory_mb": sharded["per_gpu_mib"], "gpus": gpus, "sharding": "fsdp"}
    resources = {"gpu_memory_mb": estimate.get("gpu_memory_mb"), "gpus": gpus}
    if wants == "fsdp":
        resources["sharding"] = "fsdp"
    return resources


@transaction.atomic
def job_rendezvous_publish(*, job: TrainingJob, endpoint: str) -> dict:
    """The first node of a multi-node job records where the others meet it (host:port of torchrun's
    c10d rendezvous) for the running attempt; once per attempt (a second, different one is a 409)."""
    host, _, port = endpoint.rpartition(":")
    if not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise InvalidInput(f"endpoint must be host:port, got {endpoint!r}", details={"param": "endpoint"})
    job = TrainingJob.objects.select_for_update().get(pk=job.pk)
    if job.status != JobStatus.RUNNING:
        raise Conflict(
            f"{job.public_id} is {job.status}; only a running job has a rendezvous", code="not_running"
        )
    current = job.rendezvous or {}
    if current.get("attempt") == job.attempt and current.get("endpoint") not in (None, endpoint):
        raise Conflict(
            f"attempt {job.attempt} of {job.public_id} already meets at {current['endpoint']}",
            code="rendezvous_taken",
        )
    job.rendezvous = {"endpoint": endpoint, "attempt": job.attempt}
    job.save(update_fields=["rendezvous"])
    return {"endpoint": endpoint, "attempt": job.attempt}


REFUSED_PREFIX = "refused by "


@transaction.atomic
def job_refuse(*, job: TrainingJob, worker: str, reason: str) -> dict:
    """A worker that cannot run the job (too little GPU memory, too few GPUs) hands it back: it is
    queued again for another worker, up to JOB_MAX_REFUSALS times, then failed with the reason."""
    if not reason.strip():
        raise InvalidInput("reason: say why this worker cannot run the job")
    job = TrainingJob.objects.select_for_update().get(pk=job.pk)
    if job.status != JobStatus.QUEUED:
        raise Conflict(
            f"{job.public_id} is {job.status}; only a queued job can be refused", code="not_queued"
        )
    refusals = job.events.filter(message__startswith=REFUSED_PREFIX).count() + 1
    job_event_add(
        job=job, level=JobEvent.Level.WARNING, message=f"{REFUSED_PREFIX}{worker or 'a worker'}: {reason}"
    )
    if refusals < settings.JOB_MAX_REFUSALS:
        token = job.issue_token()
        job_transition(job=job, to=JobStatus.QUEUED)  # job.queued again, as after a lost worker
        job_enqueue_on_commit(job, token)
        return {"requeued": True, "refusals": refusals}
    job_transition(
        job=job,
        to=JobStatus.FAILED,
        error=f"no worker could take it after {refusals} refusals; last: {reason}",
    )
    job_event_add(job=job, level=JobEvent.Level.ERROR, message=f"failed: {job.error}")
    return {"requeued": False, "refusals": refusals}


def _artifact_name(job: TrainingJob, path: str) -> str:
    """A worker's artifact path as the job-relative name a person reads (job-001/final), never the
    server's directory layout."""
    parts = Path(path).parts
    if job.public_id in parts:
        return "/".join(parts[parts.index(job.public_id) :])
    return f"{job.public_id}/{Path(path).name}"


def _succeeded_message(job: TrainingJob, result: dict, final_model_path: str) -> str:
    """The log's last line for a finished run: a sentence with names, not the worker's raw JSON."""
    said = []
    loss, step, total = result.get("final_loss"), result.get("global_step"), result.get("total_steps")
    if isinstance(loss, (int, float)):
        said.append(f"final loss {loss:.4f}")
    if step is not None:
        said.append(f"{step}/{total} steps" if total else f"{step} steps")
    final = final_model_path or result.get("final_model_path")
    if final:
        said.append(f"model {_artifact_name(job, final)}")
    best = result.get("best_checkpoint")
    said.append(f"best checkpoint {_artifact_name(job, best)}" if best else "no best checkpoint recorded")
    if result.get("stopped") and result.get("stopped") != "completed":
        said.append(f"stopped: {result['stopped']}")
    return "succeeded: " + ", ".join(said)


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
        job_transition(job=job, to=JobStatus.RUNNING, worker=worker)
    elif status == JobStatus.SUCCEEDED:
        best = (result or {}).get("best_checkpoint")
        if best:  # the Trainer's best checkpoint by the early-stopping / best_only metric
            Checkpoint.objects.filter(job=job).update(is_best=False)
            Checkpoint.objects.filter(job=job, path=best).update(is_best=True)
        # auto_version (a subscriber, after commit) registers a version; a registry error is logged
        # and never fails the worker's status report.
        job_transition(job=job, to=JobStatus.SUCCEEDED, final_model_path=final_model_path, result=result)
        job_event_add(job=job, message=_succeeded_message(job, result or {}, final_model_path))
    elif status == JobStatus.FAILED:
        job_transition(
            job=job, to=JobStatus.FAILED, error=error or "the worker reported a failure without a message"
        )
        job_event_add(job=job, message=f"failed: {job.error}", level="error")
    elif status == JobStatus.CANCELLED:
        job_transition(job=job, to=JobStatus.CANCELLED)
        job_event_add(job=job, message="cancelled by request; the worker stopped")
    else:
        raise InvalidInput(f"a worker cannot set status {status!r}")
    return job


def job_report_progress(*, job: TrainingJob, step: int, total_steps: int, epoch: float) -> TrainingJob:
    if job.is_terminal:
        raise Conflict(f"{job.public_id} is already {job.status}", code="job_finished")
    job.record_progress(step=step, total_steps=total_steps, epoch=epoch)
    _broadcast_status(job)
    return job


def _broadcast_status(job: TrainingJob) -> None:
    """Progress is not a lifecycle event: the job page gets it directly (after commit)."""
    broadcast_on_commit(job.pk, {"type": "job.status", "job": job_to_dict(job)})


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
        job_transition(job=job, to=JobStatus.QUEUED, lost=True)
        job_event_add(
            job=job,
            level=JobEvent.Level.WARNING,
            message=f"lost: {reason}; requeued on {job_queue(job)!r} "
            f"(attempt {job.lost_count + 1}), it resumes from its last checkpoint",
        )
        job_enqueue_on_commit(job, token)
    else:
        job_transition(job=job, to=JobStatus.FAILED, error=f"lost: {reason}")
        job_event_add(job=job, level=JobEvent.Level.ERROR, message=f"failed: {job.error}")
