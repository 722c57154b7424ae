"""The playground websocket: /ws/playground/<model_id>/<version>/.

Client → server: {"type": "generate", "messages": [{"role", "content"}...], "params": {...},
"checkpoint": <step or null>, "sides": ["version", "base"]}. Server → client, per side:
{"type": "token", "side", "text"} as tokens are produced, then {"type": "done", "side", "text",
"tokens", "seconds"} (or {"type": "error", "side", "message"}). Both sides generate at once.

While open, the socket re-checks every few seconds, and before each generation, that its user may
still use the playground (t4dm_site/ws_revocation.py): a deactivated user, a revoked token or a lost
role closes it (4401/4403) and stops the generations under way at their next token.
"""

from __future__ import annotations

import asyncio
from urllib.parse import parse_qs

from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncJsonWebsocketConsumer

from models_registry import playground
from models_registry.selectors import model_version_get, playground_targets
from t4dm_site.errors import DomainError
from t4dm_site.roles import can_train
from t4dm_site.ws_revocation import RevocableConsumerMixin


class _Revoked(Exception):
    """Raised in the generation thread at the next token once the socket's user lost access."""


class PlaygroundConsumer(RevocableConsumerMixin, AsyncJsonWebsocketConsumer):
    async def connect(self):
        user = self.scope.get("user")
        if user is None or not user.is_authenticated:
            await self.close(code=4401)
            return
        kwargs = self.scope["url_route"]["kwargs"]
        query = parse_qs((self.scope.get("query_string") or b"").decode("latin-1"))
        owner = (query.get("owner") or [None])[0]
        try:  # the registry's sharing rule: another owner's version closes like a missing one (4404)
            self.version = await database_sync_to_async(self._load)(
                user, kwargs["model_id"], kwargs["version"], owner
            )
        except DomainError:
            await self.close(code=4404)
            return
        self.tasks: set[asyncio.Task] = set()
        await self.accept()
        targets = await database_sync_to_async(playground_targets)(self.version, user=user)
        await self.send_json(
            {"type": "ready", "base": targets["base"], "checkpoints": sorted(targets["checkpoints"])}
        )
        await self.start_revocation_checks()

    def still_allowed(self, user) -> bool:
        return can_train(user)

    async def on_revoked(self) -> None:
        for task in getattr(self, "tasks", ()):
            task.cancel()

    @staticmethod
    def _load(user, model_id: str, version: str, owner: str | None = None):
        if not can_train(user):
            raise DomainError("not allowed")
        found = model_version_get(user=user, model_id=model_id, version=version, owner=owner)
        if found.config is not None and found.config.task_type == "classification":
            raise DomainError("the playground chats with generative models only")
        return found

    async def disconnect(self, code):
        await self.stop_revocation_checks()
        for task in getattr(self, "tasks", ()):
            task.cancel()

    async def receive_json(self, content, **kwargs):
        if content.get("type") == "ping":
            await self.send_json({"type": "pong"})
            return
        if not await self.check_revocation():  # a deactivated user generates nothing more
            return
        if content.get("type") != "generate":
            await self.send_json({"type": "error", "side": None, "message": 'send {"type": "generate", ...}'})
            return
        messages = content.get("messages") or []
        if not messages or not all(isinstance(m, dict) and m.get("content") for m in messages):
            await self.send_json(
                {"type": "error", "side": None, "message": "messages must be a non-empty chat"}
            )
            return
        try:
            params = playground.generation_params(content.get("params"))
        except ValueError as exc:
            await self.send_json({"type": "error", "side": None, "message": str(exc)})
            return
        targets = await database_sync_to_async(playground_targets)(self.version, user=self.scope["user"])
        checkpoint = content.get("checkpoint")
        paths = {"version": targets["checkpoints"].get(checkpoint) if checkpoint else targets["version"]}
        paths["base"] = targets["base_path"]
        for side in content.get("sides") or ["version", "base"]:
            if side not in paths or not paths[side]:
                await self.send_json(
                    {"type": "error", "side": side, "message": f"nothing to run for {side!r}"}
                )
                continue
            task = asyncio.create_task(self._generate(side, paths[side], messages, params))
            self.tasks.add(task)
            task.add_done_callback(self.tasks.discard)

    async def _generate(self, side: str, path: str, messages: list, params: dict) -> None:
        loop = asyncio.get_running_loop()

        def on_text(text: str) -> None:
            if self.revoked:  # stops model.generate in its thread
                raise _Revoked
            asyncio.run_coroutine_threadsafe(
                self.send_json({"type": "token", "side": side, "text": text}), loop
            )

        try:
            result = await asyncio.to_thread(
                playground.generate, path=path, messages=messages, params=params, on_text=on_text
            )
        except _Revoked:
            return
        except Exception as exc:  # a model that fails to load or generate is reported to the page
            if self.revoked:
                return
            await self.send_json({"type": "error", "side": side, "message": f"{type(exc).__name__}: {exc}"})
            return
        await asyncio.sleep(0)  # let the last token sends scheduled from the thread go first
        if self.revoked:
            return
        await self.send_json(
            {
                "type": "done",
                "side": side,
                "text": result.text,
                "tokens": result.tokens,
                "seconds": round(result.seconds, 3),
            }
        )
