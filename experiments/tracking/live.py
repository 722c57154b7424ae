"""Broadcasts to the job's websocket group, always after the surrounding transaction commits, so a
viewer never sees a point or a status that a rollback later takes back."""

from __future__ import annotations

import asyncio
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


def merge_points(messages: list[dict[str, Any]]) -> dict[str, Any]:
    """Several committed `job.points` broadcasts of one job as one, ids ascending. When one of them is a
    range without its points (a large batch), so is the merged one: its viewers read the whole range."""
    messages = sorted(messages, key=lambda m: m["first_id"])
    merged = {
        "type": "job.points",
        "first_id": messages[0]["first_id"],
        "last_id": max(m["last_id"] for m in messages),
    }
    if all("points_json" in m for m in messages):
        parts = [m["points_json"].strip()[1:-1].strip() for m in messages]
        merged["points_json"] = "[" + ",".join(part for part in parts if part) + "]"
    return merged


class PointsCoalescer:
    """The lean ingest path's broadcasts (t4dm_site/fast_ingest.py), gathered per job for `window`
    seconds and sent as one `group_send`, off the request's path: a worker's small batches cost the
    channel layer (Redis) one round trip per window instead of one per batch. A viewer sees points at
    most `window` later; the ids stay ascending within a message, but one job's messages may still reach
    a viewer out of id order (another window, another web process): the websocket forwards each all
    the same, skipping only what its snapshot had (tracking/consumers.py)."""

    def __init__(self, window: float) -> None:
        self.window = window
        self.pending: dict[int, list[dict[str, Any]]] = {}
        self.tasks: set[asyncio.Task] = set()

    def add(self, job_pk: int, message: dict[str, Any]) -> None:
        waiting = self.pending.get(job_pk)
        if waiting is not None:
            waiting.append(message)
            return
        self.pending[job_pk] = [message]
        task = asyncio.get_running_loop().create_task(self._send_later(job_pk))
        self.tasks.add(task)  # keep a reference until it is done
        task.add_done_callback(self.tasks.discard)

    async def _send_later(self, job_pk: int) -> None:
        await asyncio.sleep(self.window)
        messages = self.pending.pop(job_pk)
        await broadcast_async(job_pk, messages[0] if len(messages) == 1 else merge_points(messages))


def broadcast_on_commit(job_pk: int, message: dict[str, Any]) -> None:
    transaction.on_commit(lambda: broadcast(job_pk, message))
