"""Broadcasts to the job's websocket group, always after the surrounding transaction commits, so a
viewer never sees a point or a status that a rollback later takes back."""

from __future__ import annotations

import logging
from typing import Any

from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer
from django.db import transaction

log = logging.getLogger(__name__)


def job_group(job_pk: int) -> str:
    return f"job-{job_pk}"


def broadcast(job_pk: int, message: dict[str, Any]) -> None:
    """Send now (a subscriber of a lifecycle event runs after commit already)."""
    layer = get_channel_layer()
    if layer is None:
        return
    try:
        async_to_sync(layer.group_send)(job_group(job_pk), message)
    except Exception:  # a broadcast failure must never fail the ingest that already committed
        log.exception("broadcast to job %s failed", job_pk)


async def broadcast_async(job_pk: int, message: dict[str, Any]) -> None:
    """`broadcast` from the event loop (the ingest's lean ASGI path, after its statement committed)."""
    layer = get_channel_layer()
    if layer is None:
        return
    try:
        await layer.group_send(job_group(job_pk), message)
    except Exception:  # a broadcast failure must never fail the ingest that already committed
        log.exception("broadcast to job %s failed", job_pk)


def broadcast_on_commit(job_pk: int, message: dict[str, Any]) -> None:
    transaction.on_commit(lambda: broadcast(job_pk, message))
