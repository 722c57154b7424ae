"""The live workflow websocket: /ws/workflows/<workflow_id>/?after=<last update id>.

Every change of the workflow or a step is a row of its outbox (``WorkflowUpdate``, written in the
transaction that made the change by ``workflow_outbox``), holding the workflow as
GET /api/v1/workflows/<id> shows it. The socket sends {"type": "workflow", "workflow": {...},
"id": <update id>}: on connect without ``after`` the workflow now, with the id of its newest update as
the cursor; with ``after`` exactly the updates after that id; then each new update when
``workflow_live_wake`` wakes the workflow's group after commit. An idle socket reads nothing; with the
in-memory layer one watcher per web process reads the new outbox ids every
WS_WORKFLOW_FALLBACK_SECONDS (2 s). The shared machinery is t4dm_site/live_outbox.py.

Access is the API's: a trainer who owns the workflow, or an admin; else 4404. Closes with 4401/4403
once its token, session, user or role is revoked (t4dm_site/ws_revocation.py).
"""

from __future__ import annotations

from experiments.workflows.live import WORKFLOW_OUTBOX
from experiments.workflows.models import Workflow
from experiments.workflows.selectors import workflow_get, workflow_to_dict
from t4dm_site.errors import DomainError
from t4dm_site.live_outbox import OutboxConsumer
from t4dm_site.roles import can_train


class WorkflowConsumer(OutboxConsumer):
    outbox = WORKFLOW_OUTBOX
    url_kwarg = "workflow_id"
    message_type = "workflow"

    def load(self, user, record_id: str) -> int:
        if not can_train(user):
            raise DomainError("not allowed")
        return workflow_get(user=user, workflow_id=record_id).pk

    def snapshot(self, record_pk: int) -> dict:
        return workflow_to_dict(Workflow.objects.prefetch_related("steps").get(pk=record_pk))

    async def workflow_changed(self, event):  # the wake-up: {"type": "workflow.changed"}
        await self.woken()
