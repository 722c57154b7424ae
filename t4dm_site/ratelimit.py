"""Request limits, as middleware (a small cache-based limiter; no extra dependency):

- Failed logins (the login page and the admin's) and requests with a bad bearer token (API tokens,
  the worker secret; not per-job worker tokens) are counted per client address in fixed windows of
  RATE_LIMIT_WINDOW_SECONDS. Past LOGIN_RATE_LIMIT / TOKEN_RATE_LIMIT failures that address gets
  429 with Retry-After until the window ends; successful requests are never counted.
- A request body larger than MAX_UPLOAD_BYTES (by its Content-Length) is refused with 413 before it is
  parsed.

Behind reverse proxies, T4DM_TRUSTED_PROXY_HOPS says how many X-Forwarded-For entries to trust
(`client_address`); otherwise every client would share the proxy's address.

The counters live in Django's default cache: per process on the embedded default (local memory),
shared by all web processes in production (Redis; see CACHES in settings).
"""

from __future__ import annotations

import logging
import math
import time

from django.conf import settings
from django.core.cache import cache
from django.http import HttpResponse, JsonResponse

logger = logging.getLogger(__name__)

LOGIN_PATHS = ("/login/", "/admin/login/")


def _window() -> tuple[int, int]:
    """(the current window's number, seconds until it ends)."""
    size = settings.RATE_LIMIT_WINDOW_SECONDS
    now = time.time()
    number = int(now // size)
    return number, max(1, math.ceil((number + 1) * size - now))


def _key(scope: str, who: str) -> str:
    return f"t4dm:ratelimit:{scope}:{_window()[0]}:{who}"


def failures(scope: str, who: str) -> int:
    try:
        return int(cache.get(_key(scope, who), 0))
    except Exception:  # the cache (Redis) is down: fail open rather than refuse every request
        logger.warning("rate-limit cache unavailable; not limiting", exc_info=True)
        return 0


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


def client_address(request) -> str:
    """The address limits count against. Behind T4DM_TRUSTED_PROXY_HOPS reverse proxies, each of which
    appends the address it saw to X-Forwarded-For, it is the entry the outermost trusted proxy added;
    entries left of it are the client's to invent, so they are never used. With no trusted proxy the
    header is ignored."""
    hops = settings.TRUSTED_PROXY_HOPS
    if hops:
        forwarded = [part.strip() for part in request.META.get("HTTP_X_FORWARDED_FOR", "").split(",")]
        forwarded = [part for part in forwarded if part]
        if len(forwarded) >= hops:
            return forwarded[-hops]
    return request.META.get("REMOTE_ADDR") or "unknown"


def too_many(request, what: str) -> HttpResponse:
    retry_after = _window()[1]
    message = f"too many failed {what} from this address; try again in {retry_after} s"
    if request.path.startswith(LOGIN_PATHS):
        response = HttpResponse(message, status=429, content_type="text/plain; charset=utf-8")
    else:
        response = JsonResponse(
            {"error": {"code": "rate_limited", "message": message, "details": {"retry_after": retry_after}}},
            status=429,
        )
    response["Retry-After"] = str(retry_after)
    return response


def _limited_bearer(request) -> bool:
    """A bearer token other than a job's worker token. Job tokens are exempt: 256 random bits cannot be
    guessed, and a stale one is normal (a requeued job gets a new token while its old worker retries)."""
    scheme, _, token = request.headers.get("Authorization", "").partition(" ")
    return scheme.lower() == "bearer" and not token.strip().startswith("t4job_")


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
        who = client_address(request)
        login = request.method == "POST" and request.path.startswith(LOGIN_PATHS)
        token = not login and _limited_bearer(request)
        if login and failures("login", who) >= settings.LOGIN_RATE_LIMIT:
            return too_many(request, "logins")
        if token and failures("token", who) >= settings.TOKEN_RATE_LIMIT:
            return too_many(request, "API token checks")
        response = self.get_response(request)
        # A failed login re-renders the form (200); a successful one redirects.
        if login and response.status_code == 200:
            record_failure("login", who)
        elif token and response.status_code == 401:
            record_failure("token", who)
        return response
