"""Celery tasks for long dataset work (augment; prepare of sources above T4DM_SYNC_PREPARE_BYTES), on
the datasets queue (settings.CELERY_DATASET_QUEUE). Thin: load by id, call the service. Unlike training,
this worker uses the database directly."""

from __future__ import annotations

from celery import shared_task

from datasets_app.models import DatasetTask
from datasets_app.services import dataset_augment_run, dataset_prepare_run


@shared_task(name="datasets.augment", acks_late=True, reject_on_worker_lost=True)
def augment_dataset_task(task_pk: int) -> str | None:
    task = DatasetTask.objects.select_related("source_version__dataset").get(pk=task_pk)
    version = dataset_augment_run(task=task)
    return str(version) if version else None


@shared_task(name="datasets.prepare", acks_late=True, reject_on_worker_lost=True)
def prepare_dataset_task(task_pk: int) -> str | None:
    """A large upload or import: parse, check, measure, split and store it here, not in the web process."""
    task = DatasetTask.objects.select_related("owner").get(pk=task_pk)
    version = dataset_prepare_run(task=task)
    return str(version) if version else None
