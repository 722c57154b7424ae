"""Open websockets do not outlive revocation.

A websocket is authorised once, at connect; it may stay open for hours. `RevocableConsumerMixin` checks
again every `WS_RECHECK_SECONDS` (default 5 s) while the socket is open, and before work that a client
asks for (a playground generation), with a couple of indexed queries:

- the credential that let it in is still good: the user is still active, and the API token it presented
  (t4dm_site/ws_auth.py records its hash in the scope) is not revoked, or the browser session it came
  with still exists (a logout ends it) — else the socket is closed with 4401;
- the consumer's own access rule still holds for the user as now stored (a role taken away, a record no
  longer visible) — else 4403.

Once revoked, the consumer sends nothing more: handlers of group messages test `self.revoked` first.
"""

from __future__ import annotations

import asyncio
import contextlib
from importlib import import_module

from channels.db import database_sync_to_async
from django.conf import settings
from django.contrib.auth import get_user_model

CREDENTIAL_GONE_CLOSE_CODE = 4401
ACCESS_GONE_CLOSE_CODE = 4403
DEFAULT_RECHECK_SECONDS = 5.0


def recheck_seconds() -> float:
    return float(getattr(settings, "WS_RECHECK_SECONDS", DEFAULT_RECHECK_SECONDS))


def current_user(scope):
    """The scope's user as stored now, if the credential the socket was opened with is still good;
    else None."""
    user = scope.get("user")
    if user is None or not user.is_authenticated:
        return None
    fresh = get_user_model().objects.filter(pk=user.pk, is_active=True).first()
    if fresh is None:
        return None
    token_hash = scope.get("api_token_hash")
    if token_hash:
        from t4dm_site.models import ApiToken

        alive = ApiToken.objects.filter(
            token_hash=token_hash, user_id=fresh.pk, revoked_at__isnull=True
        ).exists()
        return fresh if alive else None
    session = scope.get("session")
    key = getattr(session, "session_key", None)
    if key:
        store = import_module(settings.SESSION_ENGINE).SessionStore()
        if not store.exists(key):
            return None
    return fresh


class RevocableConsumerMixin:
    """For Channels consumers: call `await self.start_revocation_checks()` after accept() and
    `await self.stop_revocation_checks()` in disconnect(); implement `still_allowed(user)` (sync, runs
    in a thread: the consumer's access rule for the user as stored now)."""

    revoked = False

    def still_allowed(self, user) -> bool:
        return True

    def _revocation_code(self) -> int | None:
        user = current_user(self.scope)
        if user is None:
            return CREDENTIAL_GONE_CLOSE_CODE
        if not self.still_allowed(user):
            return ACCESS_GONE_CLOSE_CODE
        return None

    async def check_revocation(self) -> bool:
        """Check now; close the socket if the user may no longer use it. True while allowed."""
        if self.revoked:
            return False
        code = await database_sync_to_async(self._revocation_code)()
        if code is None:
            return True
        if not self.revoked:
            self.revoked = True
            await self.on_revoked()
            await self.close(code=code)
        return False

    async def on_revoked(self) -> None:
        """Hook: stop what the socket was doing (leave groups, stop generations)."""

    async def start_revocation_checks(self) -> None:
        self._revocation_task = asyncio.create_task(self._revocation_loop())

    async def stop_revocation_checks(self) -> None:
        task = getattr(self, "_revocation_task", None)
        if task is not None and task is not asyncio.current_task():
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task

    async def _revocation_loop(self) -> None:
        while not self.revoked:
            await asyncio.sleep(recheck_seconds())
            try:
                if not await self.check_revocation():
                    return
            except Exception:  # a database hiccup: try again at the next interval
                continue
