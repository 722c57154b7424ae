"""The live dataset task websocket: /ws/dataset-tasks/<task_id>/?after=<last update id>.

Every status or progress change of a dataset task (augment, prepare; run by the dataset worker) is a
row of its outbox (``DatasetTaskUpdate``, written by ``dataset_task_outbox`` in the transaction that
made the change). The socket sends {"type": "task", "task": {...as GET /api/v1/datasets/tasks/<id>,
less a prepare's full result}, "id": <update id>}: the task now on connect (or, with ``after``,
exactly the updates after that id), then each new update when woken. An idle socket reads nothing;
the shared machinery is t4dm_site/live_outbox.py (watcher period WS_DATASET_TASK_FALLBACK_SECONDS).
Access is the API's: a trainer who owns the task, or an admin; else 4404.
"""

from __future__ import annotations

from datasets_app.models import DatasetTask
from datasets_app.selectors import dataset_task_get
from datasets_app.subscribers import DATASET_TASK_OUTBOX, dataset_task_live
from t4dm_site.errors import DomainError
from t4dm_site.live_outbox import OutboxConsumer
from t4dm_site.roles import can_train


class DatasetTaskConsumer(OutboxConsumer):
    outbox = DATASET_TASK_OUTBOX
    url_kwarg = "task_id"
    message_type = "task"

    def load(self, user, record_id: str) -> int:
        if not can_train(user):
            raise DomainError("not allowed")
        return dataset_task_get(user=user, task_id=record_id).pk

    def snapshot(self, record_pk: int) -> dict:
        task = DatasetTask.objects.select_related("source_version__dataset", "result_version__dataset")
        return dataset_task_live(task.get(pk=record_pk))

    async def dataset_task_changed(self, event):  # the wake-up: {"type": "dataset_task.changed"}
        await self.woken()
