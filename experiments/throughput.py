"""Workers' measured training speed (WorkerThroughput): what a finished job's worker reported, kept per
worker, model size class, approach and device as a running mean, for estimates to time jobs with
(experiments/training/resources.py, ``measured_rate``).

Recorded by the JobStatusChanged subscriber ``experiments.subscribers.worker_throughput``: a side effect
of a job succeeding (the worker's final status report carries ``tokens_per_sec`` in its result)."""

from __future__ import annotations

import logging

from django.db import transaction
from django.utils import timezone

from experiments.models import TrainingJob, Worker, WorkerThroughput
from experiments.training.resources import size_class

log = logging.getLogger(__name__)


def job_size_class(job: TrainingJob, result: dict) -> str | None:
    """The size class of the job's base model, from the same shapes the estimate uses (its
    config.json or the known-shape table), else from the parameter count the worker reported."""
    from experiments.estimate import model_shape_for
    from experiments.model_refs import base_model_resolve

    try:
        base = base_model_resolve(user=job.owner, name=job.config.model_base)
        shape = model_shape_for(base, job.config.task_type)
    except Exception:  # noqa: BLE001 - a base that no longer resolves: the worker's count below
        shape = None
    if shape is not None:
        return size_class(shape.total_params)
    total = result.get("total_parameters")
    return size_class(int(total)) if total else None


@transaction.atomic
def worker_throughput_record(*, job: TrainingJob, result: dict) -> WorkerThroughput | None:
    """Fold one succeeded job's measured tokens/s into its worker's running mean for the job's size
    class, approach and device. Nothing is recorded for a job without a measurement, a worker that is
    not registered, or a run over several processes (its rate is the sum over GPUs; estimates time one
    device)."""
    rate = result.get("tokens_per_sec")
    if not rate or float(rate) <= 0 or int(result.get("processes") or 1) > 1:
        return None
    worker = Worker.objects.filter(name=job.worker).first() if job.worker else None
    size = job_size_class(job, result)
    if worker is None or size is None:
        return None
    device = str(result.get("device") or "cpu")
    row, _ = WorkerThroughput.objects.select_for_update().get_or_create(
        worker=worker,
        size_class=size,
        approach=job.config.approach,
        device=device,
        defaults={"tokens_per_sec": 0.0, "samples": 0},
    )
    row.samples += 1
    row.tokens_per_sec += (float(rate) - row.tokens_per_sec) / row.samples
    row.updated_at = timezone.now()
    row.save(update_fields=["samples", "tokens_per_sec", "updated_at"])
    log.info(
        "%s: %s %s on %s measured %.0f tokens/s (mean %.0f over %d jobs)",
        worker.name,
        size,
        job.config.approach,
        device,
        float(rate),
        row.tokens_per_sec,
        row.samples,
    )
    return row
