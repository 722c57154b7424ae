"""Request limits, as middleware, and the failure counters behind them.

- **Logins** (the login page and the admin's) are limited by django-axes (settings `AXES_*`): past
  T4DM_LOGIN_RATE_LIMIT failures for one username from one client address, that pair is locked out for
  T4DM_RATE_LIMIT_WINDOW seconds (429 with Retry-After, `login_locked_out`); the same user from another
  address, and other users from that address, still log in. A successful login clears the pair.
- **Bad bearer tokens** (API tokens and the worker secret, on every API and on websocket connects) are
  counted here, hand-written on Django's cache, because axes only watches logins. Only FAILURES are
  counted and only failing requests are refused: a request whose credential is valid (an API token, a
  session, the worker secret, a job's worker token) is always served, whatever else came from its
  address. Each failure counts against its client address and against its token prefix (the first 12
  characters of a `t4dm_` token, which the platform stores and shows to tell tokens apart); past
  T4DM_TOKEN_RATE_LIMIT failures in the current window of T4DM_RATE_LIMIT_WINDOW seconds on either count,
  a refused token is answered 429 with Retry-After instead of 401 (a websocket connect is closed) until
  the window ends. So clients behind one proxy (T4DM_TRUSTED_PROXY_HOPS=0) cannot lock each other out:
  at worst their own wrong tokens get 429 instead of 401. Job tokens (`t4job_…`) are neither counted nor
  answered 429: a worker must see the 401 that tells it its job was taken away.
- A request body larger than MAX_UPLOAD_BYTES (by its Content-Length) is refused with 413 before it is
  parsed.

Behind reverse proxies, T4DM_TRUSTED_PROXY_HOPS says how many X-Forwarded-For entries to trust
(`client_address`); otherwise every client shares the proxy's address.

The token counters live in Django's default cache: per process on the embedded default (local memory),
shared by all web processes in production (Redis; see CACHES in settings). Axes keeps its attempts in
the database (SQLite or PostgreSQL), shared by every process.
"""

from __future__ import annotations

import ipaddress
import logging
import math
import re
import time
from datetime import timedelta

from django.conf import settings
from django.core.cache import cache
from django.http import HttpResponse, JsonResponse

logger = logging.getLogger(__name__)

# The part of an API token the platform stores in clear (ApiToken.prefix, `raw[:12]`).
_API_TOKEN_PREFIX = re.compile(r"t4dm_[A-Za-z0-9_-]{1,7}")


def _window() -> tuple[int, int]:
    """(the current window's number, seconds until it ends)."""
    size = settings.RATE_LIMIT_WINDOW_SECONDS
    now = time.time()
    number = int(now // size)
    return number, max(1, math.ceil((number + 1) * size - now))


def _key(scope: str, who: str) -> str:
    return f"t4dm:ratelimit:{scope}:{_window()[0]}:{who}"


def record_failure(scope: str, who: str) -> int:
    key = _key(scope, who)
    try:
        cache.add(key, 0, settings.RATE_LIMIT_WINDOW_SECONDS + 5)
        try:
            return cache.incr(key)
        except ValueError:  # expired between add and incr
            cache.set(key, 1, settings.RATE_LIMIT_WINDOW_SECONDS + 5)
            return 1
    except Exception:
        logger.warning("rate-limit cache unavailable; failure not counted", exc_info=True)
        return 0


def _address(remote: str | None, forwarded_for: str) -> str:
    hops = settings.TRUSTED_PROXY_HOPS
    if hops:
        forwarded = [part.strip() for part in forwarded_for.split(",")]
        forwarded = [part for part in forwarded if part]
        if len(forwarded) >= hops:
            return forwarded[-hops]
    return remote or "unknown"


def client_address(request) -> str:
    """The address limits count against. Behind T4DM_TRUSTED_PROXY_HOPS reverse proxies, each of which
    appends the address it saw to X-Forwarded-For, it is the entry the outermost trusted proxy added;
    entries left of it are the client's to invent, so they are never used. With no trusted proxy the
    header is ignored."""
    return _address(request.META.get("REMOTE_ADDR"), request.META.get("HTTP_X_FORWARDED_FOR", ""))


def login_client_address(request) -> str | None:
    """axes' AXES_CLIENT_IP_CALLABLE: `client_address` when it is an IP address, else None (axes stores
    it in a GenericIPAddressField: PostgreSQL's inet refuses anything else, e.g. a test request or a
    proxy's "unknown")."""
    address = client_address(request)
    try:
        return str(ipaddress.ip_address(address))
    except ValueError:
        return None


def scope_client_address(scope) -> str:
    """`client_address` for an ASGI scope (websockets)."""
    headers = dict(scope.get("headers") or [])
    forwarded = headers.get(b"x-forwarded-for", b"").decode("latin-1")
    client = scope.get("client") or (None,)
    return _address(client[0], forwarded)


def bearer_token(authorization: str) -> str | None:
    """The raw token of an `Authorization: Bearer …` header value, else None."""
    scheme, _, token = authorization.partition(" ")
    return token.strip() if scheme.lower() == "bearer" else None


def token_prefix(raw: str) -> str | None:
    """The non-secret identifying part of a token the limit also counts against: an API token's stored
    prefix. The worker secret and anything else have none (their failures count per address only)."""
    match = _API_TOKEN_PREFIX.match(raw)
    return match.group(0) if match else None


def token_failure(address: str, raw: str) -> bool:
    """Count one refused bearer token; True when its address or its prefix is now past the limit."""
    limit = settings.TOKEN_RATE_LIMIT
    over = record_failure("token", address) > limit
    prefix = token_prefix(raw)
    if prefix is not None:
        over = record_failure("token-prefix", prefix) > limit or over
    return over


def _retry_after_response(message: str, retry_after: int) -> JsonResponse:
    response = JsonResponse(
        {"error": {"code": "rate_limited", "message": message, "details": {"retry_after": retry_after}}},
        status=429,
    )
    response["Retry-After"] = str(retry_after)
    return response


def too_many_tokens() -> JsonResponse:
    retry_after = _window()[1]
    return _retry_after_response(
        "the bearer token was not accepted, and too many refused tokens came from this address or with "
        f"this token prefix; try again in {retry_after} s (valid credentials are not affected)",
        retry_after,
    )


def login_failure_limit(request, credentials) -> int:
    """axes' AXES_FAILURE_LIMIT: T4DM_LOGIN_RATE_LIMIT, read when used."""
    return settings.LOGIN_RATE_LIMIT


def login_cool_off(request) -> timedelta:
    """axes' AXES_COOLOFF_TIME: T4DM_RATE_LIMIT_WINDOW seconds after the last failure, read when used."""
    return timedelta(seconds=settings.RATE_LIMIT_WINDOW_SECONDS)


def login_locked_out(request, response=None, credentials=None) -> HttpResponse:
    """axes' AXES_LOCKOUT_CALLABLE: 429 with Retry-After for a locked (username, address) pair. Attempts
    while locked are not recorded (AXES_RESET_COOL_OFF_ON_FAILURE_DURING_LOCKOUT=False: a flood cannot
    grow the attempt rows), so the lockout ends a cool-off after the pair's last recorded failure."""
    from axes.helpers import get_client_username, get_cool_off
    from axes.models import AccessAttempt
    from django.db.models import Max
    from django.utils import timezone

    cool_off = get_cool_off(request)
    retry_after = 0
    if cool_off:
        username = get_client_username(request, getattr(request, "axes_credentials", None))
        last = AccessAttempt.objects.filter(
            username=username, ip_address=getattr(request, "axes_ip_address", None)
        ).aggregate(last=Max("attempt_time"))["last"]
        remaining = (last + cool_off - timezone.now()) if last else cool_off
        retry_after = max(1, math.ceil(remaining.total_seconds()))
    message = "too many failed logins for this user from this address"
    message += f"; try again in {retry_after} s" if retry_after else "; ask an admin to unlock it"
    locked = HttpResponse(message, status=429, content_type="text/plain; charset=utf-8")
    if retry_after:
        locked["Retry-After"] = str(retry_after)
    return locked


class RequestLimitsMiddleware:
    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        limit = settings.MAX_UPLOAD_BYTES
        length = request.META.get("CONTENT_LENGTH") or "0"
        if limit and length.isdigit() and int(length) > limit:
            return JsonResponse(
                {
                    "error": {
                        "code": "payload_too_large",
                        "message": f"the request has {int(length)} bytes; the limit is {limit} "
                        "(T4DM_MAX_UPLOAD_BYTES)",
                        "details": {"limit": limit},
                    }
                },
                status=413,
            )
        response = self.get_response(request)
        # Only a request the API refused for its bearer token counts, and only it is answered 429: the
        # limit is checked after authentication, so valid credentials are never refused.
        if response.status_code == 401:
            from experiments.models import JOB_TOKEN_PREFIX

            raw = bearer_token(request.headers.get("Authorization", ""))
            if raw is not None and not raw.startswith(JOB_TOKEN_PREFIX):
                if token_failure(client_address(request), raw):
                    return too_many_tokens()
        return response
