"""Websocket authentication: the browser's session cookie, or `Authorization: Bearer <API token>` for
scripts and the SDK."""

from __future__ import annotations

from channels.auth import AuthMiddlewareStack
from channels.db import database_sync_to_async

from t4dm_site.models import hash_token
from t4dm_site.services import api_token_authenticate


class BearerTokenMiddleware:
    def __init__(self, inner):
        self.inner = inner

    async def __call__(self, scope, receive, send):
        headers = dict(scope.get("headers", []))
        header = headers.get(b"authorization", b"").decode()
        scheme, _, raw = header.partition(" ")
        if scheme.lower() == "bearer" and raw:
            user = await database_sync_to_async(api_token_authenticate)(raw=raw.strip())
            if user is not None:
                # Which token let it in (its hash): consumers re-check it while the socket is open
                # (t4dm_site/ws_revocation.py), so revoking it closes the socket.
                scope = {**scope, "user": user, "api_token_hash": hash_token(raw)}
        return await self.inner(scope, receive, send)


def T4dmAuthStack(inner):  # noqa: N802 - named like Channels' AuthMiddlewareStack
    # Session auth runs first and sets scope["user"]; a valid bearer token then takes precedence.
    return AuthMiddlewareStack(BearerTokenMiddleware(inner))
