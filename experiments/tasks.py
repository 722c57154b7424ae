"""Celery tasks: thin. Load by id, call the worker runner."""

from __future__ import annotations

from celery import shared_task
from django.conf import settings

from experiments.training.worker import run_job


@shared_task(name="experiments.train_job", acks_late=True, reject_on_worker_lost=True)
def train_job(job_pk: int, token: str) -> str:
    # The worker reports over HTTP with the job's token; it does not touch the database.
    return run_job(server_url=settings.SERVER_URL, job_id=f"job-{job_pk:03d}", token=token)
