"""The workflow page's live channel: the group its websockets join, and the wake-up sent to it after a
change commits. The message only says "read the outbox": what changed is in the WorkflowUpdate rows,
read by id, so a lost or undeliverable wake-up (the in-memory layer does not cross processes) costs
a delay until the socket's slow fallback check, never a change."""

from __future__ import annotations

import logging

from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer

log = logging.getLogger(__name__)

WAKE = {"type": "workflow.changed"}


def workflow_group(workflow_pk: int) -> str:
    return f"workflow-{workflow_pk}"


def wake(workflow_pk: int) -> None:
    layer = get_channel_layer()
    if layer is None:
        return
    try:
        async_to_sync(layer.group_send)(workflow_group(workflow_pk), dict(WAKE))
    except Exception:  # the change committed; viewers still find it at their fallback check
        log.exception("waking the viewers of workflow %s failed", workflow_pk)
