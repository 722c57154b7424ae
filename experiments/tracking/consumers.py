"""The live job websocket: /ws/jobs/<job_id>/?after=<cursor>[&seen=<n>&upto=<id>].

On connect: join the job's group first, then send a snapshot (the job and every point with id > after,
downsampled for long series), then forward live messages, skipping only the points the snapshot had.
Because the group is joined before the snapshot is read, nothing falls between the two. A job's ids
grow in commit order (its ingest holds the job row's lock), so the snapshot has every point up to its
`last_id`; the live batches, though, may arrive in any order (two ingest requests in flight, the lean
path's coalescer, several web processes): each is forwarded whole, whatever came before it, never
dropped because a later batch overtook it.

Reconnecting: `after` is the last snapshot's `last_id` (the client had everything up to it), and the
client says how many distinct points it got live since (`seen`) with ids up to `upto`. When the job
holds exactly that many points in (after, upto], nothing in between was missed and the snapshot starts
at `upto`; otherwise it starts at `after` again (the client keys points by step, so the repeats are
drawn once).

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
from experiments.tracking.series import metric_series, points_between, points_in_range
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
            query = self._query()
            after = int(query.get("after", "0") or 0)
            seen, upto = int(query.get("seen", "0") or 0), int(query.get("upto", "0") or 0)
            self.job = await database_sync_to_async(self._load_job)(user, job_id)
        except (DomainError, ValueError):
            await self.close(code=4404)
            return
        self.group = job_group(self.job.pk)
        await self.channel_layer.group_add(self.group, self.channel_name)
        await self.accept()
        snapshot = await database_sync_to_async(self._snapshot)(after, seen, upto)
        self.last_id = snapshot["last_id"]  # the snapshot's cursor; live batches never move it
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

    def _snapshot(self, after: int, seen: int = 0, upto: int = 0) -> dict:
        self.job.refresh_from_db()
        if seen > 0 and upto > after and points_between(job=self.job, after_id=after, upto_id=upto) == seen:
            after = upto  # the client had every point up to `upto`
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
        # The ingest broadcasts the new points as JSON text, ids ascending (a large batch as its id range
        # alone, read here: experiments/tracking/ingest.py `points_message`). Each batch comes once, but
        # not necessarily in id order, so only the snapshot's cursor decides what this client had: a
        # batch wholly after it (the usual case) is forwarded as it is — no decoding per viewer — and
        # one that the snapshot overlaps loses only the overlapped points.
        if self.revoked or event["last_id"] <= self.last_id:
            return
        if "points_json" not in event:  # a large batch, broadcast as its id range: read what is new
            fresh = await database_sync_to_async(points_in_range)(
                job=self.job, after_id=max(self.last_id, event["first_id"] - 1), upto_id=event["last_id"]
            )
            await self.send_json({"type": "points", "points": fresh, "last_id": event["last_id"]})
            return
        if event["first_id"] > self.last_id:
            await self.send(
                text_data=f'{{"type": "points", "points": {event["points_json"]}, "last_id": {event["last_id"]}}}'
            )
            return
        fresh = [p for p in json.loads(event["points_json"]) if p["id"] > self.last_id]
        await self.send_json({"type": "points", "points": fresh, "last_id": event["last_id"]})

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
