"""Housekeeping the web side runs with the lost-job check: old live-page outbox rows are pruned.

Every live page's outbox (subclasses of ``t4dm_site.models.OutboxUpdate``) gets one row per change
of its record and nothing else removes them. A page load reads the record itself and the newest row
id as its cursor, and a viewer that reconnects asks for the rows after its cursor; so rows older than
``T4DM_OUTBOX_KEEP_HOURS`` (default 24) are deleted, except each record's newest row, which stays as
the cursor a page starts from. ``t4dm_up`` runs this every T4DM_REAP_INTERVAL_SECONDS, and
``manage.py t4dm_reap_lost_jobs`` (cron, production) runs it too.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from django.apps import apps
from django.conf import settings
from django.db.models import Max
from django.utils import timezone

from t4dm_site.models import OutboxUpdate

DEFAULT_KEEP_HOURS = 24.0
BATCH = 5_000  # rows deleted per statement: a long prune never holds a big lock


def outbox_models() -> list[type[OutboxUpdate]]:
    return [m for m in apps.get_models() if issubclass(m, OutboxUpdate) and not m._meta.abstract]


def prune_outboxes(*, now: datetime | None = None, keep_hours: float | None = None) -> dict[str, int]:
    """Delete outbox rows older than the keep window, keeping each record's newest row; returns the
    number deleted per model label."""
    if keep_hours is None:
        keep_hours = float(getattr(settings, "OUTBOX_KEEP_HOURS", DEFAULT_KEEP_HOURS))
    cutoff = (now or timezone.now()) - timedelta(hours=keep_hours)
    deleted: dict[str, int] = {}
    for model in outbox_models():
        record_id = f"{model.record_field}_id"
        newest = model.objects.values(record_id).annotate(newest=Max("id")).values("newest")
        total = 0
        while True:
            ids = list(
                model.objects.filter(created_at__lt=cutoff)
                .exclude(id__in=newest)
                .values_list("id", flat=True)[:BATCH]
            )
            if not ids:
                break
            total += model.objects.filter(id__in=ids).delete()[0]
        deleted[model._meta.label] = total
    return deleted
