"""Webhook subscriptions (CRUD) and one delivery attempt. The Celery task calls
``webhook_delivery_attempt``; a retryable failure (5xx, 429, connection error) raises
``RetryableDeliveryError`` so the task retries with backoff."""

from __future__ import annotations

import json
import secrets
from urllib.parse import urlparse

import httpx
from django.conf import settings
from django.db import transaction
from django.db.models import F
from django.utils import timezone

from experiments.integrations.models import ALL_EVENTS, WebhookDelivery, WebhookSubscription
from experiments.integrations.signing import DELIVERY_HEADER, EVENT_HEADER, SIGNATURE_HEADER, sign
from t4dm_site.errors import InvalidInput

# What emit() sends today; "*" and "<entity>.*" patterns are accepted too.
EVENT_TYPES = (
    "job.queued",
    "job.running",
    "job.succeeded",
    "job.failed",
    "job.cancelled",
    "evaluation.completed",
    "evaluation.failed",
    "model_version.created",
    "model_version.stage_changed",
    "workflow.step_succeeded",
    "workflow.step_failed",
    "workflow.succeeded",
    "workflow.failed",
)


class RetryableDeliveryError(Exception):
    pass


def _check_url(url: str) -> str:
    parsed = urlparse(url or "")
    if parsed.scheme not in ("http", "https") or not parsed.netloc:
        raise InvalidInput(f"url {url!r}: expected an http:// or https:// URL", details={"field": "url"})
    return url


def _check_event_types(event_types: list[str]) -> list[str]:
    if not isinstance(event_types, list) or not event_types:
        raise InvalidInput(
            'event_types: give a list of event types, or ["*"] for all', details={"field": "event_types"}
        )
    for event_type in event_types:
        if not isinstance(event_type, str) or not event_type.strip():
            raise InvalidInput(f"event_types: {event_type!r} is not an event type")
        prefix = event_type[:-1] if event_type.endswith(".*") else None
        known = event_type == ALL_EVENTS or event_type in EVENT_TYPES
        if prefix is not None:
            known = any(t.startswith(prefix) for t in EVENT_TYPES)
        if not known:
            raise InvalidInput(
                f"event_types: unknown event type {event_type!r}",
                details={"field": "event_types", "known": ["*", *EVENT_TYPES]},
            )
    return [t.strip() for t in event_types]


def webhook_subscription_create(
    *,
    owner,
    url: str,
    event_types: list[str],
    secret: str | None = None,
    active: bool = True,
    description: str = "",
) -> WebhookSubscription:
    if secret is not None and len(secret) < 16:
        raise InvalidInput("secret: use at least 16 characters (or leave it out to get a generated one)")
    return WebhookSubscription.objects.create(
        url=_check_url(url),
        event_types=_check_event_types(event_types),
        secret=secret or secrets.token_urlsafe(32),
        active=active,
        description=description,
        created_by=owner,
    )


def webhook_subscription_update(*, subscription: WebhookSubscription, **changes) -> WebhookSubscription:
    if changes.get("url") is not None:
        subscription.url = _check_url(changes["url"])
    if changes.get("event_types") is not None:
        subscription.event_types = _check_event_types(changes["event_types"])
    if changes.get("secret") is not None:
        if len(changes["secret"]) < 16:
            raise InvalidInput("secret: use at least 16 characters")
        subscription.secret = changes["secret"]
    if changes.get("active") is not None:
        subscription.active = changes["active"]
    if changes.get("description") is not None:
        subscription.description = changes["description"]
    subscription.save()
    return subscription


def webhook_body(delivery: WebhookDelivery) -> bytes:
    """The exact bytes sent (and signed): the same for every attempt of one delivery."""
    envelope = {
        "id": str(delivery.event_id),
        "type": delivery.event_type,
        "created_at": delivery.created_at.isoformat(),
        "delivery_id": str(delivery.delivery_id),
        "data": delivery.payload,
    }
    return json.dumps(envelope, sort_keys=True, separators=(",", ":")).encode("utf-8")


def webhook_delivery_attempt(*, delivery_pk: int, final: bool = False) -> str:
    """POST one delivery. Returns its status. A delivery that already succeeded (a redelivered task, a
    duplicate enqueue) is not sent again."""
    delivery = WebhookDelivery.objects.select_related("subscription").filter(pk=delivery_pk).first()
    if delivery is None:
        return "missing"
    if delivery.status != WebhookDelivery.Status.PENDING:
        return delivery.status
    subscription = delivery.subscription
    body = webhook_body(delivery)
    headers = {
        "Content-Type": "application/json",
        "User-Agent": "T4DM-Webhooks/1",
        SIGNATURE_HEADER: sign(subscription.secret, body),
        EVENT_HEADER: delivery.event_type,
        DELIVERY_HEADER: str(delivery.delivery_id),
    }
    now = timezone.now()
    WebhookDelivery.objects.filter(pk=delivery.pk).update(attempts=F("attempts") + 1, last_attempt_at=now)
    try:
        response = httpx.post(
            subscription.url, content=body, headers=headers, timeout=settings.WEBHOOK_TIMEOUT_SECONDS
        )
    except httpx.HTTPError as exc:
        return _failed_attempt(delivery, code=None, error=f"{type(exc).__name__}: {exc}", retry=not final)
    code = response.status_code
    if 200 <= code < 300:
        with transaction.atomic():
            # Conditional update: of two racing attempts only one records the success.
            WebhookDelivery.objects.filter(pk=delivery.pk, status=WebhookDelivery.Status.PENDING).update(
                status=WebhookDelivery.Status.SUCCEEDED,
                last_status_code=code,
                last_error="",
                delivered_at=timezone.now(),
            )
        return WebhookDelivery.Status.SUCCEEDED
    error = f"HTTP {code}: {response.text[:500]}"
    retryable = code >= 500 or code in (408, 429)
    return _failed_attempt(delivery, code=code, error=error, retry=retryable and not final)


def _failed_attempt(delivery: WebhookDelivery, *, code: int | None, error: str, retry: bool) -> str:
    fields = {"last_status_code": code, "last_error": error}
    if not retry:
        fields["status"] = WebhookDelivery.Status.FAILED
    WebhookDelivery.objects.filter(pk=delivery.pk, status=WebhookDelivery.Status.PENDING).update(**fields)
    if retry:
        raise RetryableDeliveryError(error)
    return WebhookDelivery.Status.FAILED
