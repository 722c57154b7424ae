"""Celery tasks: thin. Load by id, call the worker runner. A worker also heartbeats while it is up."""

from __future__ import annotations

from celery import shared_task
from celery.signals import worker_ready, worker_shutdown
from django.conf import settings

from experiments.training.worker import WorkerHeartbeat, run_job

_heartbeat: list[WorkerHeartbeat] = []


@shared_task(bind=True, name="experiments.train_job", acks_late=True, reject_on_worker_lost=True)
def train_job(self, job_pk: int, token: str, node: int = 0) -> str:
    # The worker reports over HTTP with the job's token; it does not touch the database. It names
    # itself as its heartbeat does, so the heartbeat keeps this job alive and a restart frees it.
    # ``node``: one of a multi-node job's messages (experiments/training/rendezvous.py).
    return run_job(
        server_url=settings.SERVER_URL,
        job_id=f"job-{job_pk:03d}",
        token=token,
        name=self.request.hostname,
        node=node,
    )


@worker_ready.connect
def _start_heartbeat(sender, **kwargs) -> None:
    queues = ",".join(sorted(sender.app.amqp.queues.consume_from or {}))
    _heartbeat.append(
        WorkerHeartbeat(
            server_url=settings.SERVER_URL,
            secret=settings.WORKER_SECRET,
            name=sender.hostname,
            queue=queues,
            interval=settings.WORKER_HEARTBEAT_SECONDS,
        ).start()
    )


@worker_shutdown.connect
def _stop_heartbeat(sender, **kwargs) -> None:
    while _heartbeat:
        _heartbeat.pop().stop()
