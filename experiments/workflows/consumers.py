"""The live workflow websocket: /ws/workflows/<workflow_id>/.

Sends {"type": "workflow", "workflow": {...}} (the same JSON as GET /api/v1/workflows/<id>) on connect
and again whenever a step changes. Steps run in worker processes, and the embedded default's
in-memory channel layer cannot carry a message from another process, so instead of a group the
consumer itself reads the workflow every second and sends only what changed; that works the same on
every channel layer.
"""

from __future__ import annotations

import asyncio
import json

from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncJsonWebsocketConsumer

from experiments.workflows.models import Workflow
from experiments.workflows.selectors import workflow_get, workflow_to_dict
from t4dm_site.errors import DomainError
from t4dm_site.roles import can_train
from t4dm_site.ws_revocation import RevocableConsumerMixin

POLL_SECONDS = 1.0


def _fingerprint(data: dict) -> str:
    """What a viewer sees change: statuses, outputs, errors (not the running step's growing duration)."""
    steps = [(s["status"], s["attempts"], s["finished_at"], s["error"], s["output"]) for s in data["steps"]]
    return json.dumps([data["status"], data["error"], steps], sort_keys=True, default=str)


class WorkflowConsumer(RevocableConsumerMixin, AsyncJsonWebsocketConsumer):
    """Closes with 4401/4403 once its token, session, user or role is revoked (t4dm_site/ws_revocation.py)."""

    async def connect(self):
        user = self.scope.get("user")
        if user is None or not user.is_authenticated:
            await self.close(code=4401)
            return
        workflow_id = self.scope["url_route"]["kwargs"]["workflow_id"]
        try:
            self.workflow_pk = await database_sync_to_async(self._load)(user, workflow_id)
        except DomainError:
            await self.close(code=4404)
            return
        await self.accept()
        self.follower = asyncio.create_task(self._follow())
        await self.start_revocation_checks()

    @staticmethod
    def _load(user, workflow_id: str) -> int:
        if not can_train(user):
            raise DomainError("not allowed")
        return workflow_get(user=user, workflow_id=workflow_id).pk

    def still_allowed(self, user) -> bool:
        try:
            self._load(user, self.scope["url_route"]["kwargs"]["workflow_id"])
        except DomainError:
            return False
        return True

    async def on_revoked(self) -> None:
        follower = getattr(self, "follower", None)
        if follower is not None and follower is not asyncio.current_task():
            follower.cancel()

    def _read(self) -> dict:
        return workflow_to_dict(Workflow.objects.prefetch_related("steps").get(pk=self.workflow_pk))

    async def _follow(self) -> None:
        last = None
        while not self.revoked:
            data = await database_sync_to_async(self._read)()
            fingerprint = _fingerprint(data)
            if fingerprint != last and not self.revoked:
                last = fingerprint
                await self.send_json({"type": "workflow", "workflow": data})
            await asyncio.sleep(POLL_SECONDS)

    async def disconnect(self, code):
        await self.stop_revocation_checks()
        follower = getattr(self, "follower", None)
        if follower is not None:
            follower.cancel()

    async def receive_json(self, content, **kwargs):
        if content.get("type") == "ping":  # server → client only; a ping keeps proxies from idling it out
            await self.send_json({"type": "pong"})
