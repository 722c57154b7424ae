"""The live job websocket: /ws/jobs/<job_id>/?after=<last point id>.

On connect: join the job's group first, then send a snapshot (the job and every point with id > after,
downsampled for long series), then forward live messages, skipping any point the snapshot already
had. Because the group is joined before the snapshot is read, nothing falls between the two; because
the cursor is the point id, a client that reconnects with its last id gets exactly what it missed.

While open, the socket re-checks every few seconds that its user may still watch the job
(t4dm_site/ws_revocation.py): a revoked token, a deactivated user or a lost role closes it (4401/4403)
and nothing more is sent.
"""

from __future__ import annotations

import json

from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncJsonWebsocketConsumer
from django.conf import settings

from experiments.selectors import job_get, job_to_dict
from experiments.tracking.live import job_group
from experiments.tracking.series import metric_series
from t4dm_site.errors import DomainError
from t4dm_site.roles import can_train
from t4dm_site.ws_revocation import RevocableConsumerMixin


class JobConsumer(RevocableConsumerMixin, AsyncJsonWebsocketConsumer):
    async def connect(self):
        user = self.scope.get("user")
        if user is None or not user.is_authenticated:
            await self.close(code=4401)
            return
        job_id = self.scope["url_route"]["kwargs"]["job_id"]
        try:
            after = int(self._query().get("after", "0") or 0)
            self.job = await database_sync_to_async(self._load_job)(user, job_id)
        except (DomainError, ValueError):
            await self.close(code=4404)
            return
        self.group = job_group(self.job.pk)
        await self.channel_layer.group_add(self.group, self.channel_name)
        await self.accept()
        snapshot = await database_sync_to_async(self._snapshot)(after)
        self.last_id = snapshot["last_id"]
        await self.send_json({"type": "snapshot", **snapshot})
        await self.start_revocation_checks()

    def still_allowed(self, user) -> bool:
        try:
            self._load_job(user, self.job.public_id)
        except DomainError:
            return False
        return True

    async def on_revoked(self) -> None:
        await self.channel_layer.group_discard(self.group, self.channel_name)

    def _query(self) -> dict[str, str]:
        from urllib.parse import parse_qsl

        return dict(parse_qsl(self.scope.get("query_string", b"").decode()))

    @staticmethod
    def _load_job(user, job_id):
        if not can_train(user):
            raise DomainError("not allowed")
        job = job_get(user=user, job_id=job_id)
        return job

    def _snapshot(self, after: int) -> dict:
        self.job.refresh_from_db()
        series = metric_series(job=self.job, after_id=after, max_points=settings.WS_MAX_POINTS_PER_SERIES)
        return {"job": job_to_dict(self.job), **series}

    async def disconnect(self, code):
        await self.stop_revocation_checks()
        if hasattr(self, "group"):
            await self.channel_layer.group_discard(self.group, self.channel_name)

    async def receive_json(self, content, **kwargs):
        # The channel is server → client; a client message is only a keep-alive ping.
        if content.get("type") == "ping" and not self.revoked:
            await self.send_json({"type": "pong"})

    async def job_points(self, event):
        # The ingest broadcasts the new points as JSON text, ids ascending. The usual case, a batch
        # wholly after what this client has, is forwarded as it is — no decoding per viewer.
        if self.revoked or event["last_id"] <= self.last_id:
            return
        if event["first_id"] > self.last_id:
            self.last_id = event["last_id"]
            await self.send(
                text_data=f'{{"type": "points", "points": {event["points_json"]}, "last_id": {self.last_id}}}'
            )
            return
        fresh = [p for p in json.loads(event["points_json"]) if p["id"] > self.last_id]
        self.last_id = event["last_id"]
        await self.send_json({"type": "points", "points": fresh, "last_id": self.last_id})

    async def job_checkpoint(self, event):
        if self.revoked:
            return
        await self.send_json({"type": "checkpoint", "checkpoint": event["checkpoint"]})

    async def job_status(self, event):
        if self.revoked:
            return
        await self.send_json({"type": "status", "job": event["job"]})

    async def job_log(self, event):
        if self.revoked:
            return
        await self.send_json({"type": "log", "event": event["event"]})
