"""The live workflow websocket: /ws/workflows/<workflow_id>/?after=<last update id>.

Every change of the workflow or a step is a row of its outbox (``WorkflowUpdate``, written in the
transaction that made the change), holding the workflow as GET /api/v1/workflows/<id> shows it. The
socket sends {"type": "workflow", "workflow": {...}, "id": <update id>}:

- on connect without ``after``: the workflow now, with the id of its newest update as the cursor;
  with ``after``: exactly the updates after that id (a reconnecting viewer gets what it missed);
- then each new update, in id order, when the channel layer wakes the socket (the subscriber
  ``workflow_live_wake`` sends to the workflow's group after commit).

The group is joined before the cursor is read, so no update falls between the two. A socket reads
nothing while idle. The embedded default's in-memory channel layer does not cross processes (steps run
in worker processes), so with it one watcher per web process (not per viewer), while any workflow
socket is open, reads the ids of new outbox rows every WS_WORKFLOW_FALLBACK_SECONDS (2 s; one indexed
query) and wakes the groups of the workflows that changed. A layer that crosses processes (Redis)
needs no watcher.
"""

from __future__ import annotations

import asyncio
import logging
import weakref
from urllib.parse import parse_qsl

from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncJsonWebsocketConsumer
from channels.layers import InMemoryChannelLayer
from django.conf import settings

from experiments.workflows.live import WAKE, workflow_group
from experiments.workflows.models import Workflow, WorkflowUpdate
from experiments.workflows.selectors import workflow_get, workflow_to_dict
from t4dm_site.errors import DomainError
from t4dm_site.roles import can_train
from t4dm_site.ws_revocation import RevocableConsumerMixin

log = logging.getLogger(__name__)

FALLBACK_SECONDS = 2.0
MAX_UPDATES_PER_READ = 200  # a viewer far behind gets the rest at the next read


def fallback_seconds() -> float:
    return float(getattr(settings, "WS_WORKFLOW_FALLBACK_SECONDS", FALLBACK_SECONDS))


class OutboxWatcher:
    """For a channel layer that cannot cross processes: one per event loop (web process), running only
    while a workflow socket is open; it turns outbox rows that another process committed into the
    wake-ups that process could not deliver here."""

    def __init__(self) -> None:
        self.viewers = 0
        self.cursor: int | None = None
        self.task: asyncio.Task | None = None

    async def join(self, layer) -> None:
        """Returns once the cursor is read: rows after it are the watcher's; a viewer catches up on the
        ones before it itself, after joining."""
        self.viewers += 1
        if self.cursor is None:
            newest = await database_sync_to_async(self._newest)()
            if self.cursor is None:  # the first read wins: a later one could skip an earlier viewer's rows
                self.cursor = newest
        if self.task is None or self.task.done():
            self.task = asyncio.create_task(self._run(layer))

    def leave(self) -> None:
        self.viewers = max(0, self.viewers - 1)

    @staticmethod
    def _newest() -> int:
        return WorkflowUpdate.objects.order_by("-id").values_list("id", flat=True).first() or 0

    @staticmethod
    def _changed(after: int) -> list[tuple[int, int]]:
        return list(
            WorkflowUpdate.objects.filter(id__gt=after).order_by("id").values_list("id", "workflow_id")[:1000]
        )

    async def _run(self, layer) -> None:
        while self.viewers > 0:
            await asyncio.sleep(fallback_seconds())
            if self.viewers == 0:
                break
            try:
                changed = await database_sync_to_async(self._changed)(self.cursor or 0)
                if changed:
                    self.cursor = changed[-1][0]
                for workflow_pk in dict.fromkeys(pk for _, pk in changed):
                    await layer.group_send(workflow_group(workflow_pk), dict(WAKE))
            except Exception:  # a database hiccup: try again at the next tick
                log.exception("the workflow outbox watcher could not read the outbox")
        self.cursor = None  # the next viewer starts from the newest row again


_watchers: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def outbox_watcher() -> OutboxWatcher:
    loop = asyncio.get_running_loop()
    watcher = _watchers.get(loop)
    if watcher is None:
        watcher = _watchers[loop] = OutboxWatcher()
    return watcher


class WorkflowConsumer(RevocableConsumerMixin, AsyncJsonWebsocketConsumer):
    """Closes with 4401/4403 once its token, session, user or role is revoked (t4dm_site/ws_revocation.py)."""

    async def connect(self):
        user = self.scope.get("user")
        if user is None or not user.is_authenticated:
            await self.close(code=4401)
            return
        workflow_id = self.scope["url_route"]["kwargs"]["workflow_id"]
        try:
            after = self._after()
            self.workflow_pk = await database_sync_to_async(self._load)(user, workflow_id)
        except (DomainError, ValueError):
            await self.close(code=4404)
            return
        self.reading = asyncio.Lock()
        self.group = workflow_group(self.workflow_pk)
        await self.channel_layer.group_add(self.group, self.channel_name)
        await self.accept()
        if after is None:
            self.last_id, data = await database_sync_to_async(self._snapshot)()
            await self.send_json({"type": "workflow", "workflow": data, "id": self.last_id})
        else:
            self.last_id = after
            await self._catch_up()
        if isinstance(self.channel_layer, InMemoryChannelLayer):  # cannot hear a worker process
            self.watcher = outbox_watcher()
            await self.watcher.join(self.channel_layer)
            await self._catch_up()  # what committed before the watcher's cursor
        await self.start_revocation_checks()

    def _after(self) -> int | None:
        query = dict(parse_qsl(self.scope.get("query_string", b"").decode()))
        if not query.get("after"):
            return None
        after = int(query["after"])
        if after < 0:
            raise ValueError(after)
        return after

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
        await self.channel_layer.group_discard(self.group, self.channel_name)
        self._leave_watcher()

    def _leave_watcher(self) -> None:
        watcher = getattr(self, "watcher", None)
        if watcher is not None:
            self.watcher = None
            watcher.leave()

    def _snapshot(self) -> tuple[int, dict]:
        # The cursor first: an update committed after it is sent again later, never lost.
        last_id = (
            WorkflowUpdate.objects.filter(workflow_id=self.workflow_pk)
            .order_by("-id")
            .values_list("id", flat=True)
        ).first() or 0
        workflow = Workflow.objects.prefetch_related("steps").get(pk=self.workflow_pk)
        return last_id, workflow_to_dict(workflow)

    def _updates(self, after: int) -> list[tuple[int, dict]]:
        rows = WorkflowUpdate.objects.filter(workflow_id=self.workflow_pk, id__gt=after).order_by("id")
        return list(rows.values_list("id", "payload")[:MAX_UPDATES_PER_READ])

    async def _catch_up(self) -> None:
        """Send the outbox rows after the cursor, in order (one reader at a time)."""
        async with self.reading:
            while not self.revoked:
                updates = await database_sync_to_async(self._updates)(self.last_id)
                for update_id, payload in updates:
                    if self.revoked:
                        return
                    self.last_id = update_id
                    await self.send_json({"type": "workflow", "workflow": payload, "id": update_id})
                if len(updates) < MAX_UPDATES_PER_READ:
                    return

    async def workflow_changed(self, event):
        if not self.revoked:
            await self._catch_up()

    async def disconnect(self, code):
        await self.stop_revocation_checks()
        if hasattr(self, "group"):
            await self.channel_layer.group_discard(self.group, self.channel_name)
        self._leave_watcher()

    async def receive_json(self, content, **kwargs):
        if content.get("type") == "ping" and not self.revoked:  # server → client only; a keep-alive ping
            await self.send_json({"type": "pong"})
