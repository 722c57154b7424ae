"""The workflow page's live channel: its outbox (``WorkflowUpdate`` rows, read by id), the group its
websockets join, and the wake-up sent to it after a change commits. The message only says "read the
outbox": what changed is in the rows, so a lost or undeliverable wake-up (the in-memory layer does not
cross processes) costs a delay until the watcher's next read, never a change. The machinery is
t4dm_site/live_outbox.py, shared with the evaluation and dataset task pages."""

from __future__ import annotations

from t4dm_site.live_outbox import Outbox

WORKFLOW_OUTBOX = Outbox(
    model_label="workflows.WorkflowUpdate",
    record_field="workflow",
    group_prefix="workflow",
    wake_type="workflow.changed",
    fallback_setting="WS_WORKFLOW_FALLBACK_SECONDS",
)


def workflow_group(workflow_pk: int) -> str:
    return WORKFLOW_OUTBOX.group(workflow_pk)


def wake(workflow_pk: int) -> None:
    """After commit: tell the workflow's websockets (in any process the layer reaches) to read the outbox."""
    WORKFLOW_OUTBOX.wake(workflow_pk)
