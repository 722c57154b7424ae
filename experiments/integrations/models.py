"""Webhook subscriptions and their delivery log."""

from __future__ import annotations

import uuid

from django.db import models
from django.utils import timezone

from t4dm_site.public_ids import PublicIdMixin

ALL_EVENTS = "*"


class WebhookSubscription(PublicIdMixin, models.Model):
    PUBLIC_ID_PREFIX = "wh"

    url = models.URLField(max_length=500)
    # Signs every body: X-T4DM-Signature: sha256=<hex HMAC-SHA256(secret, raw body)>.
    secret = models.CharField(max_length=200)
    # A list of event types ("job.succeeded", "evaluation.completed", ...) or ["*"] for all.
    event_types = models.JSONField(default=list)
    active = models.BooleanField(default=True)
    description = models.CharField(max_length=200, blank=True)
    created_by = models.ForeignKey(
        "auth.User", null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["pk"]

    def __str__(self) -> str:
        return f"{self.public_id} → {self.url}"

    def matches(self, event_type: str) -> bool:
        if ALL_EVENTS in self.event_types or event_type in self.event_types:
            return True
        # "job.*" matches every job event.
        return any(t.endswith(".*") and event_type.startswith(t[:-1]) for t in self.event_types)


class WebhookDelivery(PublicIdMixin, models.Model):
    PUBLIC_ID_PREFIX = "dlv"

    class Status(models.TextChoices):
        PENDING = "pending"
        SUCCEEDED = "succeeded"
        FAILED = "failed"

    subscription = models.ForeignKey(WebhookSubscription, on_delete=models.CASCADE, related_name="deliveries")
    # Sent as X-T4DM-Delivery: receivers dedupe on it (it stays the same across retries).
    delivery_id = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    # One id per emitted event, shared by every subscription's delivery of it.
    event_id = models.UUIDField(db_index=True)
    event_type = models.CharField(max_length=100)
    payload = models.JSONField(default=dict)
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.PENDING)
    attempts = models.PositiveIntegerField(default=0)
    last_status_code = models.IntegerField(null=True, blank=True)
    last_error = models.TextField(blank=True)
    created_at = models.DateTimeField(default=timezone.now)
    last_attempt_at = models.DateTimeField(null=True, blank=True)
    delivered_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-pk"]
        verbose_name_plural = "webhook deliveries"

    def __str__(self) -> str:
        return f"{self.public_id} {self.event_type} ({self.status})"
