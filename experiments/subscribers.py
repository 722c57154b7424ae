"""Subscribers of job events (the table is t4dm_site.events.SUBSCRIBERS): the job page's live status
and the job.* webhooks."""

from __future__ import annotations

from experiments.integrations.events import emit
from experiments.live import broadcast
from experiments.models import TrainingJob
from experiments.selectors import job_to_dict
from t4dm_site.events import JobCancelRequested, JobStatusChanged


def job_status_broadcast(event: JobStatusChanged | JobCancelRequested) -> None:
    """The job's websocket group gets its current state (after commit, so never a rolled-back one)."""
    job = TrainingJob.objects.select_related("config", "experiment").get(pk=event.job_pk)
    broadcast(job.pk, {"type": "job.status", "job": job_to_dict(job)})


def job_webhook(event: JobStatusChanged) -> None:
    """Webhooks: job.queued / running / succeeded / failed / cancelled, recorded in the transaction
    that moved the job and sent after it commits."""
    job = TrainingJob.objects.select_related("config", "experiment").get(pk=event.job_pk)
    emit(event.webhook_type, {"job": job_to_dict(job)})


def worker_throughput(event: JobStatusChanged) -> None:
    """A succeeded job's measured tokens/s joins its worker's running mean for the model's size class
    and approach (experiments/throughput.py), which resource estimates time jobs with."""
    if event.status != "succeeded" or not event.result:
        return
    from experiments.throughput import worker_throughput_record

    job = TrainingJob.objects.select_related("config", "owner").get(pk=event.job_pk)
    worker_throughput_record(job=job, result=event.result)
