"""Websocket admission: the Origin check, then authentication — the browser's session cookie, or
`Authorization: Bearer <API token>` for scripts and the SDK.

- `SameOriginValidator`: a websocket is accepted only when its Origin is this site's own origin —
  scheme, host AND port, as the client addressed the site (the Host header, which must be one of
  ALLOWED_HOSTS; https when the connection is wss or the TLS proxy says so by SECURE_PROXY_SSL_HEADER) —
  or one of CSRF_TRUSTED_ORIGINS (T4DM_CSRF_TRUSTED_ORIGINS, e.g. the public origin when a proxy rewrites
  Host). A connect without Origin is refused too. Channels' AllowedHostsOriginValidator compared host
  names only, so a page on any port of an allowed host (http://127.0.0.1:9999) could open a user's
  websockets with the user's cookie.
- `BearerTokenMiddleware`: a valid API token sets the user. A refused one counts as a failed token
  check in the same limiter as the HTTP APIs (t4dm_site/ratelimit.py, per client address and token
  prefix); past the limit the connect is closed with code 4429 (daphne answers the handshake with 403).
  A valid token is never refused.
"""

from __future__ import annotations

from urllib.parse import urlparse

from channels.auth import AuthMiddlewareStack
from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncWebsocketConsumer
from django.conf import settings
from django.http.request import is_same_domain, split_domain_port, validate_host

from t4dm_site.models import hash_token
from t4dm_site.ratelimit import bearer_token, scope_client_address, token_failure
from t4dm_site.services import api_token_authenticate

DEFAULT_PORTS = {"http": 80, "https": 443}
TOO_MANY_TOKENS_CLOSE_CODE = 4429


def _origin(url: str) -> tuple[str, str, int] | None:
    """(scheme, host, port) of an http(s) origin, the port filled in; None if it is not one."""
    try:
        parsed = urlparse(url)
        scheme, host, port = parsed.scheme.lower(), parsed.hostname, parsed.port
    except ValueError:  # a port out of range or not a number
        return None
    if scheme not in DEFAULT_PORTS or not host:
        return None
    return scheme, host.lower(), port or DEFAULT_PORTS[scheme]


def _secure(scope, headers: dict[bytes, bytes]) -> bool:
    if scope.get("scheme") in ("wss", "https"):
        return True
    proxy_header = getattr(settings, "SECURE_PROXY_SSL_HEADER", None)
    if not proxy_header:
        return False
    meta_name, expected = proxy_header
    name = meta_name.removeprefix("HTTP_").lower().replace("_", "-").encode()
    value = headers.get(name, b"").decode("latin-1").split(",")[0].strip()
    return value == expected


def site_origin(scope) -> tuple[str, str, int] | None:
    """The origin the client addressed (scheme, host, port), or None if its Host is not allowed."""
    headers = dict(scope.get("headers") or [])
    host = headers.get(b"host", b"").decode("latin-1")
    allowed = settings.ALLOWED_HOSTS or ([".localhost", "127.0.0.1", "[::1]"] if settings.DEBUG else [])
    domain, _ = split_domain_port(host)
    if not domain or not validate_host(domain, allowed):
        return None
    return _origin(f"{'https' if _secure(scope, headers) else 'http'}://{host}")


def origin_allowed(scope) -> bool:
    headers = dict(scope.get("headers") or [])
    raw = headers.get(b"origin")
    if raw is None:
        return False
    origin = _origin(raw.decode("latin-1"))
    site = site_origin(scope)
    if origin is None or site is None:
        return False
    if origin == site:
        return True
    for trusted in settings.CSRF_TRUSTED_ORIGINS:
        scheme, _, netloc = trusted.partition("://")
        wildcard = netloc.startswith("*.")
        pattern = _origin(f"{scheme}://{netloc[1:] if wildcard else netloc}")
        if pattern is None or (origin[0], origin[2]) != (pattern[0], pattern[2]):
            continue
        if origin[1] == pattern[1] or (wildcard and is_same_domain(origin[1], "." + pattern[1].lstrip("."))):
            return True
    return False


class _Refuse(AsyncWebsocketConsumer):
    """Closes the connect before accepting it (daphne answers the handshake with 403)."""

    close_code: int | None = None

    async def connect(self):
        await self.close(code=self.close_code)


class _TooManyTokens(_Refuse):
    close_code = TOO_MANY_TOKENS_CLOSE_CODE


class SameOriginValidator:
    def __init__(self, inner):
        self.inner = inner

    async def __call__(self, scope, receive, send):
        if scope["type"] == "websocket" and not origin_allowed(scope):
            return await _Refuse()(scope, receive, send)
        return await self.inner(scope, receive, send)


def _token_user(raw: str, address: str):
    """(the token's user or None, whether to refuse the connect: a bad token past the limit)."""
    user = api_token_authenticate(raw=raw)
    if user is not None:
        return user, False
    return None, token_failure(address, raw)


class BearerTokenMiddleware:
    def __init__(self, inner):
        self.inner = inner

    async def __call__(self, scope, receive, send):
        headers = dict(scope.get("headers", []))
        raw = bearer_token(headers.get(b"authorization", b"").decode("latin-1"))
        if raw:
            user, refused = await database_sync_to_async(_token_user)(raw, scope_client_address(scope))
            if refused:
                return await _TooManyTokens()(scope, receive, send)
            if user is not None:
                # Which token let it in (its hash): consumers re-check it while the socket is open
                # (t4dm_site/ws_revocation.py), so revoking it closes the socket.
                scope = {**scope, "user": user, "api_token_hash": hash_token(raw)}
        return await self.inner(scope, receive, send)


def T4dmAuthStack(inner):  # noqa: N802 - named like Channels' AuthMiddlewareStack
    # Session auth runs first and sets scope["user"]; a valid bearer token then takes precedence.
    return AuthMiddlewareStack(BearerTokenMiddleware(inner))
