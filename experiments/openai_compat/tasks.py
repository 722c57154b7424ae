"""Celery tasks of the OpenAI-compatible API, thin (load by id, call the service): preparing a large
/v1/files upload on the dataset worker, combining a fine-tuning job's large training and validation files
there, and following an outside provider's fine-tuning job
(finetune_openai)."""

from __future__ import annotations

from celery import shared_task
from django.conf import settings

from datasets_app.models import DatasetTask
from experiments.openai_compat.models import ProviderJob

POLL_SECONDS = 10.0


@shared_task(name="openai_compat.file_prepare", acks_late=True, reject_on_worker_lost=True)
def file_prepare_task(task_pk: int) -> str | None:
    """A /v1/files upload above T4DM_SYNC_PREPARE_BYTES, prepared here rather than in the web process."""
    from experiments.openai_compat.services import file_prepare_run

    f = file_prepare_run(task=DatasetTask.objects.select_related("owner").get(pk=task_pk))
    return f.file_id if f else None


@shared_task(name="openai_compat.validation_files", acks_late=True, reject_on_worker_lost=True)
def validation_files_task(task_pk: int) -> int | None:
    """A fine-tuning job's training and validation files (above T4DM_SYNC_PREPARE_BYTES together) combined
    into one dataset version here rather than in the web request; the job reacts to the task's end."""
    from experiments.openai_compat.services import validation_files_run

    version = validation_files_run(task=DatasetTask.objects.select_related("owner").get(pk=task_pk))
    return version.pk if version else None


@shared_task(name="openai_compat.provider_job_follow")
def provider_job_follow(provider_job_pk: int) -> str:
    from experiments.providers.openai_provider import provider_job_sync

    provider_job = provider_job_sync(
        provider_job=ProviderJob.objects.select_related("job").get(pk=provider_job_pk)
    )
    if not provider_job.job.is_terminal:
        # The database-side queue (the training workers have no database access).
        provider_job_follow.apply_async(
            (provider_job_pk,), countdown=POLL_SECONDS, queue=settings.CELERY_DATASET_QUEUE
        )
    return provider_job.remote_status


def follow_on_commit(provider_job: ProviderJob) -> None:
    from django.db import transaction

    pk = provider_job.pk
    transaction.on_commit(lambda: provider_job_follow.apply_async((pk,), queue=settings.CELERY_DATASET_QUEUE))
