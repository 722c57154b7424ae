from __future__ import annotations

import hashlib
import secrets

from django.conf import settings
from django.db import models
from django.utils import timezone

API_TOKEN_PREFIX = "t4dm_"


def hash_token(raw: str) -> str:
    return hashlib.sha256(raw.encode()).hexdigest()


class ApiToken(models.Model):
    """A per-user API token. Only its SHA-256 is stored; the raw value is shown once, at creation."""

    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="api_tokens")
    name = models.CharField(max_length=100, default="default")
    prefix = models.CharField(
        max_length=16, editable=False, help_text="First characters, to tell tokens apart."
    )
    token_hash = models.CharField(max_length=64, unique=True, editable=False)
    created_at = models.DateTimeField(default=timezone.now, editable=False)
    last_used_at = models.DateTimeField(null=True, blank=True, editable=False)
    revoked_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"{self.prefix}… ({self.name}, {self.user})"

    @property
    def is_active(self) -> bool:
        return self.revoked_at is None

    @staticmethod
    def generate_raw() -> str:
        return API_TOKEN_PREFIX + secrets.token_urlsafe(32)

    def revoke(self) -> None:
        self.revoked_at = timezone.now()
        self.save(update_fields=["revoked_at"])


class OutboxUpdate(models.Model):
    """The shape every live page's outbox shares (t4dm_site/live_outbox.py): one row per change of a
    record, written in the transaction that made the change, holding what the page shows (``payload``);
    the row id is the viewers' cursor. A subclass adds the foreign key to its record (named as its
    ``Outbox.record_field``), its ``kind`` (the change's type) and its cursor index, and sets
    ``record_field``. WorkflowUpdate, EvaluationUpdate and DatasetTaskUpdate are ones."""

    record_field = ""

    payload = models.JSONField()
    created_at = models.DateTimeField(default=timezone.now, editable=False)

    class Meta:
        abstract = True
        ordering = ["id"]

    def __str__(self) -> str:
        return f"{getattr(self, self.record_field + '_id', None)} #{self.pk} {getattr(self, 'kind', '')}"
