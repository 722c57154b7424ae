"""Subscribers of lifecycle events (the table is t4dm_site.events.SUBSCRIBERS): the dataset page's
outbox of task changes (augment, prepare) and its wake-up; the websocket is datasets_app/consumers.py,
the shared machinery t4dm_site/live_outbox.py."""

from __future__ import annotations

from datasets_app.models import DatasetTask, DatasetTaskUpdate
from datasets_app.selectors import dataset_task_to_dict as dataset_task_live
from t4dm_site.events import DatasetTaskChanged
from t4dm_site.live_outbox import Outbox

DATASET_TASK_OUTBOX = Outbox(
    model_label="datasets_app.DatasetTaskUpdate",
    record_field="task",
    group_prefix="dataset-task",
    wake_type="dataset_task.changed",
    fallback_setting="WS_DATASET_TASK_FALLBACK_SECONDS",
)


def _task(task_pk: int) -> DatasetTask:
    return DatasetTask.objects.select_related("source_version__dataset", "result_version__dataset").get(
        pk=task_pk
    )


def dataset_task_outbox(event: DatasetTaskChanged) -> None:
    """The dataset page's outbox row (in the transaction): the task now."""
    task = _task(event.task_pk)
    DatasetTaskUpdate.objects.create(task=task, kind=event.webhook_type, payload=dataset_task_live(task))


def dataset_task_live_wake(event: DatasetTaskChanged) -> None:
    """After commit: tell the task's websockets (in any process the layer reaches) to read the outbox."""
    DATASET_TASK_OUTBOX.wake(event.task_pk)
