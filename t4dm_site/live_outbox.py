"""A live page fed by a persisted outbox read by id: the pieces every such websocket shares.

A change that a page shows is written as a row of an outbox model (one row per change, in the
transaction that made it, by a lifecycle-event subscriber; the row holds what the page shows). After
commit another subscriber sends a wake-up to the record's channel group; the socket then sends the
rows after its cursor (the row id). So a change made in a worker process reaches every viewer in any
process, a viewer that reconnects with ``?after=<id>`` gets exactly what it missed, and an idle socket
reads nothing. The wake-up only says "read the outbox": a lost one costs a delay, never a change.

The embedded default's in-memory channel layer does not cross processes, so with it one
``OutboxWatcher`` per web process and outbox (not per viewer), while any of its sockets is open, reads
the ids of new rows every few seconds (one indexed query) and wakes the groups of the records that
changed. A layer that crosses processes (Redis) needs no watcher.

Used by the workflow page (experiments/workflows/consumers.py), the evaluation page
(experiments/evaluation/consumers.py) and dataset tasks (datasets_app/consumers.py: the dataset page's
augment and the upload page's prepare). Their outbox models share ``OutboxUpdate`` (t4dm_site/models.py).
"""

from __future__ import annotations

import asyncio
import logging
import weakref
from dataclasses import dataclass
from urllib.parse import parse_qsl

from asgiref.sync import async_to_sync
from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncJsonWebsocketConsumer
from channels.layers import InMemoryChannelLayer, get_channel_layer
from django.conf import settings

from t4dm_site.errors import DomainError
from t4dm_site.ws_revocation import RevocableConsumerMixin

log = logging.getLogger(__name__)

MAX_UPDATES_PER_READ = 200  # a viewer far behind gets the rest at the next read


@dataclass(frozen=True)
class Outbox:
    """One outbox: its model, the field naming the record a row is about (``evaluation`` →
    ``evaluation_id``), the group prefix, the wake-up's message type and the watcher's setting."""

    model_label: str  # "app_label.ModelName" (resolved lazily: this module is imported before the apps)
    record_field: str
    group_prefix: str
    wake_type: str
    fallback_setting: str
    fallback_default: float = 2.0

    @property
    def model(self):
        from django.apps import apps

        return apps.get_model(self.model_label)

    def group(self, record_pk: int) -> str:
        return f"{self.group_prefix}-{record_pk}"

    def fallback_seconds(self) -> float:
        return float(getattr(settings, self.fallback_setting, self.fallback_default))

    def wake(self, record_pk: int) -> None:
        """After commit: tell the record's sockets (in any process the layer reaches) to read the outbox."""
        layer = get_channel_layer()
        if layer is None:
            return
        try:
            async_to_sync(layer.group_send)(self.group(record_pk), {"type": self.wake_type})
        except Exception:  # the change committed; viewers still find it at their fallback read
            log.exception("waking the viewers of %s failed", self.group(record_pk))


class OutboxWatcher:
    """For a channel layer that cannot cross processes: one per event loop and outbox, running only
    while one of its sockets is open; it turns rows that another process committed into the wake-ups
    that process could not deliver here."""

    def __init__(self, outbox: Outbox) -> None:
        self.outbox = outbox
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

    def _newest(self) -> int:
        return self.outbox.model.objects.order_by("-id").values_list("id", flat=True).first() or 0

    def _changed(self, after: int) -> list[tuple[int, int]]:
        rows = self.outbox.model.objects.filter(id__gt=after).order_by("id")
        return list(rows.values_list("id", f"{self.outbox.record_field}_id")[:1000])

    async def _run(self, layer) -> None:
        while self.viewers > 0:
            await asyncio.sleep(self.outbox.fallback_seconds())
            if self.viewers == 0:
                break
            try:
                changed = await database_sync_to_async(self._changed)(self.cursor or 0)
                if changed:
                    self.cursor = changed[-1][0]
                for record_pk in dict.fromkeys(pk for _, pk in changed):
                    await layer.group_send(self.outbox.group(record_pk), {"type": self.outbox.wake_type})
            except Exception:  # a database hiccup: try again at the next tick
                log.exception("the %s watcher could not read the outbox", self.outbox.model_label)
        self.cursor = None  # the next viewer starts from the newest row again


_watchers: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def outbox_watcher(outbox: Outbox) -> OutboxWatcher:
    loop = asyncio.get_running_loop()
    per_loop = _watchers.setdefault(loop, {})
    watcher = per_loop.get(outbox)
    if watcher is None:
        watcher = per_loop[outbox] = OutboxWatcher(outbox)
    return watcher


class OutboxConsumer(RevocableConsumerMixin, AsyncJsonWebsocketConsumer):
    """/ws/<things>/<id>/?after=<last update id>: sends {"type": message_type, message_type: payload,
    "id": <update id>}: on connect without ``after`` the record now (``snapshot``) with the id of its
    newest update as the cursor; with ``after`` exactly the updates after that id; then each new update,
    in id order, when woken. The group is joined before the cursor is read, so no update falls between
    the two. Closes with 4401 unauthenticated, 4404 not found / not the viewer's (or a bad ``after``),
    and 4401/4403 once its credential or access is revoked (t4dm_site/ws_revocation.py).

    A subclass sets ``outbox``, ``url_kwarg``, ``message_type`` and implements ``load`` (the record's
    pk for a user allowed to see it, else DomainError) and ``snapshot`` (its payload now); its wake-up
    handler (named after ``outbox.wake_type``, dots as underscores) calls ``self.woken()``."""

    outbox: Outbox
    url_kwarg: str
    message_type: str

    def load(self, user, record_id: str) -> int:
        raise NotImplementedError

    def snapshot(self, record_pk: int) -> dict:
        raise NotImplementedError

    async def connect(self):
        user = self.scope.get("user")
        if user is None or not user.is_authenticated:
            await self.close(code=4401)
            return
        try:
            after = self._after()
            self.record_pk = await database_sync_to_async(self.load)(user, self._record_id())
        except (DomainError, ValueError):
            await self.close(code=4404)
            return
        self.reading = asyncio.Lock()
        self.group = self.outbox.group(self.record_pk)
        await self.channel_layer.group_add(self.group, self.channel_name)
        await self.accept()
        if after is None:
            self.last_id, data = await database_sync_to_async(self._snapshot)()
            await self.send_json({"type": self.message_type, self.message_type: data, "id": self.last_id})
        else:
            self.last_id = after
            await self._catch_up()
        if isinstance(self.channel_layer, InMemoryChannelLayer):  # cannot hear a worker process
            self.watcher = outbox_watcher(self.outbox)
            await self.watcher.join(self.channel_layer)
            await self._catch_up()  # what committed before the watcher's cursor
        await self.start_revocation_checks()

    def _record_id(self) -> str:
        return self.scope["url_route"]["kwargs"][self.url_kwarg]

    def _after(self) -> int | None:
        query = dict(parse_qsl(self.scope.get("query_string", b"").decode()))
        if not query.get("after"):
            return None
        after = int(query["after"])
        if after < 0:
            raise ValueError(after)
        return after

    def still_allowed(self, user) -> bool:
        try:
            self.load(user, self._record_id())
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

    def _rows(self):
        return self.outbox.model.objects.filter(**{f"{self.outbox.record_field}_id": self.record_pk})

    def _snapshot(self) -> tuple[int, dict]:
        # The cursor first: an update committed after it is sent again later, never lost.
        last_id = self._rows().order_by("-id").values_list("id", flat=True).first() or 0
        return last_id, self.snapshot(self.record_pk)

    def _updates(self, after: int) -> list[tuple[int, dict]]:
        rows = self._rows().filter(id__gt=after).order_by("id")
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
                    await self.send_json(
                        {"type": self.message_type, self.message_type: payload, "id": update_id}
                    )
                if len(updates) < MAX_UPDATES_PER_READ:
                    return

    async def woken(self) -> None:
        if not self.revoked and hasattr(self, "reading"):
            await self._catch_up()

    async def disconnect(self, code):
        await self.stop_revocation_checks()
        if hasattr(self, "group"):
            await self.channel_layer.group_discard(self.group, self.channel_name)
        self._leave_watcher()

    async def receive_json(self, content, **kwargs):
        if content.get("type") == "ping" and not self.revoked:  # server → client only; a keep-alive ping
            await self.send_json({"type": "pong"})
