"""``emit(event_type, payload)``: the one call other apps make to tell outside systems something happened.

Each active subscription whose event types match gets a WebhookDelivery row (the delivery log) in the
caller's transaction; the delivery task is enqueued only after that transaction commits, so a receiver
never hears about a change that was rolled back. Event types are "<entity>.<what>", e.g.
``job.running``, ``job.succeeded``, ``evaluation.completed``, ``model_version.created``,
``model_version.stage_changed``, ``workflow.succeeded``.
"""

from __future__ import annotations

import json
import logging
import uuid

from django.core.serializers.json import DjangoJSONEncoder
from django.db import transaction

log = logging.getLogger(__name__)


def emit(event_type: str, payload: dict) -> None:
    """Record a delivery for each matching webhook subscription; deliver after commit. Never raises for a
    payload it can serialize: an event for other systems must not break the change that caused it."""
    from experiments.integrations.models import WebhookDelivery, WebhookSubscription

    data = json.loads(json.dumps(payload, cls=DjangoJSONEncoder))
    subscriptions = [s for s in WebhookSubscription.objects.filter(active=True) if s.matches(event_type)]
    if not subscriptions:
        return
    event_id = uuid.uuid4()
    deliveries = WebhookDelivery.objects.bulk_create(
        WebhookDelivery(subscription=s, event_id=event_id, event_type=event_type, payload=data)
        for s in subscriptions
    )
    pks = [d.pk for d in deliveries]
    if any(pk is None for pk in pks):  # backends without RETURNING on bulk_create
        pks = list(WebhookDelivery.objects.filter(event_id=event_id).values_list("pk", flat=True))
    transaction.on_commit(lambda: _enqueue(pks))


def _enqueue(pks: list[int]) -> None:
    from experiments.integrations.tasks import deliver_webhook, webhook_queue

    for pk in pks:
        try:
            deliver_webhook.apply_async(args=[pk], queue=webhook_queue())
        except Exception:  # a broker outage must not fail the request that emitted the event
            log.exception("could not enqueue webhook delivery %s; it stays pending", pk)
