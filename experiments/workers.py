"""The worker fleet: heartbeats (a worker's state on the Workers page; they also keep its running job
from being reaped as lost). Lost jobs themselves are experiments.jobs.jobs_reap_lost."""

from __future__ import annotations

from datetime import datetime

from django.db import transaction
from django.utils import timezone

from experiments.jobs import _job_lost
from experiments.models import JobStatus, TrainingJob, Worker, WorkerStatus
from t4dm_site.errors import InvalidInput
from t4dm_site.public_ids import parse_public_id


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
