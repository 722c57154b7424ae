"""Webhook delivery on the platform queue (the one whose workers have database access). Thin: the
service does the work; the task only turns a retryable failure into a Celery retry with backoff."""

from __future__ import annotations

from celery import shared_task
from django.conf import settings


def webhook_queue() -> str:
    return settings.WEBHOOK_QUEUE


@shared_task(name="integrations.deliver_webhook", bind=True, acks_late=True, max_retries=None)
def deliver_webhook(self, delivery_pk: int) -> str:
    from experiments.integrations.services import RetryableDeliveryError, webhook_delivery_attempt

    try:
        return webhook_delivery_attempt(
            delivery_pk=delivery_pk, final=self.request.retries >= settings.WEBHOOK_MAX_RETRIES
        )
    except RetryableDeliveryError as exc:
        countdown = settings.WEBHOOK_RETRY_BACKOFF_SECONDS * (2**self.request.retries)
        raise self.retry(
            exc=exc, countdown=countdown, max_retries=settings.WEBHOOK_MAX_RETRIES, queue=webhook_queue()
        ) from exc
