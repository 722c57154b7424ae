"""The live evaluation websocket: /ws/evaluations/<evaluation_id>/?after=<last update id>.

Every status or progress change of an evaluation is a row of its outbox (``EvaluationUpdate``, written
by the EvaluationProgressed / EvaluationFinished subscriber ``evaluation_outbox`` in the transaction
that made the change, in the evaluation worker's process). The socket sends
{"type": "evaluation", "evaluation": {evaluation_id, status, progress, progress_message, error,
finished_at}, "id": <update id>}: on connect without ``after`` the evaluation now, with the id of its
newest update as the cursor; with ``after`` exactly the updates after that id; then each new update
when ``evaluation_live_wake`` wakes the evaluation's group after commit. An idle socket reads nothing;
with the in-memory layer one watcher per web process reads the new outbox ids every
WS_EVALUATION_FALLBACK_SECONDS (2 s). The shared machinery is t4dm_site/live_outbox.py.

Access is the API's (GET /api/v1/evaluations/<id>): a trainer who owns the evaluation, or an admin;
another owner's evaluation closes with 4404, as the job and workflow sockets do.
"""

from __future__ import annotations

from experiments.evaluation.models import Evaluation
from experiments.evaluation.selectors import evaluation_get
from experiments.evaluation.subscribers import EVALUATION_OUTBOX, evaluation_live
from t4dm_site.errors import DomainError
from t4dm_site.live_outbox import OutboxConsumer
from t4dm_site.roles import can_train


class EvaluationConsumer(OutboxConsumer):
    outbox = EVALUATION_OUTBOX
    url_kwarg = "evaluation_id"
    message_type = "evaluation"

    def load(self, user, record_id: str) -> int:
        if not can_train(user):
            raise DomainError("not allowed")
        return evaluation_get(user=user, evaluation_id=record_id).pk

    def snapshot(self, record_pk: int) -> dict:
        return evaluation_live(Evaluation.objects.get(pk=record_pk))

    async def evaluation_changed(self, event):  # the wake-up: {"type": "evaluation.changed"}
        await self.woken()
