"""The live human-eval results websocket: /ws/human-eval/<task_id>/?after=<last update id>.

Every change the results page shows (generation progress, ready or failed, a rating submitted or
changed) is a row of its outbox (``HumanEvalUpdate``, written by ``human_eval_outbox`` in the
transaction that made it). The socket sends {"type": "human_eval", "human_eval": {task_id, status,
progress, error, ratings[, kind]}, "id": <update id>}: the task now on connect (or, with ``after``,
exactly the updates after that id, each with its ``kind``), then each new update when woken; the page
then reads its tables once per change. An idle
socket reads nothing; the shared machinery is t4dm_site/live_outbox.py (watcher period
WS_HUMAN_EVAL_FALLBACK_SECONDS, 2 s by default).

Access is the results page's (GET /api/v1/human-eval/tasks/<id>/results): a researcher who owns the
task, or an admin; an evaluator or another owner closes with 4404 (evaluators never learn results).
"""

from __future__ import annotations

from experiments.human_eval.models import HumanEvalTask
from experiments.human_eval.selectors import task_get
from experiments.human_eval.subscribers import HUMAN_EVAL_OUTBOX, human_eval_live
from t4dm_site.errors import DomainError
from t4dm_site.live_outbox import OutboxConsumer
from t4dm_site.roles import can_train


class HumanEvalConsumer(OutboxConsumer):
    outbox = HUMAN_EVAL_OUTBOX
    url_kwarg = "task_id"
    message_type = "human_eval"

    def load(self, user, record_id: str) -> int:
        if not can_train(user):
            raise DomainError("not allowed")
        return task_get(user=user, task_id=record_id).pk

    def snapshot(self, record_pk: int) -> dict:
        return human_eval_live(HumanEvalTask.objects.get(pk=record_pk))

    async def human_eval_changed(self, event):  # the wake-up: {"type": "human_eval.changed"}
        await self.woken()
