"""Following an outside provider's fine-tuning job (finetune_openai): thin, load by id and sync."""

from __future__ import annotations

from celery import shared_task
from django.conf import settings

from experiments.openai_compat.models import ProviderJob

POLL_SECONDS = 10.0


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
