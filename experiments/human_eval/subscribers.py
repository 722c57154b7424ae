"""Subscribers of HumanEvalChanged (the table is t4dm_site.events.SUBSCRIBERS): the results page's
outbox row, in the transaction, and the wake-up of its websockets after commit."""

from __future__ import annotations

from experiments.human_eval.models import HumanEvalRating, HumanEvalTask, HumanEvalUpdate
from t4dm_site.events import HumanEvalChanged
from t4dm_site.live_outbox import Outbox

# The results page's live channel (t4dm_site/live_outbox.py): its websocket is
# experiments/human_eval/consumers.py.
HUMAN_EVAL_OUTBOX = Outbox(
    model_label="human_eval.HumanEvalUpdate",
    record_field="task",
    group_prefix="human-eval",
    wake_type="human_eval.changed",
    fallback_setting="WS_HUMAN_EVAL_FALLBACK_SECONDS",
)


def human_eval_live(task: HumanEvalTask) -> dict:
    """What tells the results page that it changed: the status, generation progress and rating count
    (the page then reads its tables once; model names are not in it)."""
    return {
        "task_id": task.public_id,
        "status": task.status,
        "progress": task.progress,
        "error": task.error,
        "ratings": HumanEvalRating.objects.filter(task=task).count(),
    }


def human_eval_outbox(event: HumanEvalChanged) -> None:
    """The results page's outbox row (in the transaction): the task now."""
    task = HumanEvalTask.objects.get(pk=event.task_pk)
    payload = {**human_eval_live(task), "kind": event.webhook_type}  # a changed rating keeps the count
    HumanEvalUpdate.objects.create(task=task, kind=event.webhook_type, payload=payload)


def human_eval_live_wake(event: HumanEvalChanged) -> None:
    """After commit: tell the task's websockets (in any process the layer reaches) to read the outbox."""
    HUMAN_EVAL_OUTBOX.wake(event.task_pk)
