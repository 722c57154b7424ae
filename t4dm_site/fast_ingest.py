"""The worker ingest's lean path: `POST /api/v1/ingest/jobs/<id>/metrics` with a job token, answered
in the ASGI application before Django's request stack, on PostgreSQL.

A training worker posts small batches many times a second (`HttpReporter` flushes ≥ 2×/s; a batch is
often one step, 2–10 points). Through Django each costs several milliseconds of web-process CPU whatever
its size: the middleware list, ninja, the hop from the event loop to a sync thread and back, the token
query, the job-row lock and the insert as three round trips in a transaction, then the broadcast through
`async_to_sync`. Here the same request is one statement on an async psycopg connection (no thread): the
statement (experiments/tracking/ingest.py `INSERT_POSTGRESQL_JOB_TOKEN`) checks the token's hash against
the job's running attempt, takes the job row's lock, checks and inserts the points and folds the rollups
and the latest values; it commits by itself (autocommit), and the new points go to the job's channel
group: gathered per job for a short window (T4DM_INGEST_BROADCAST_WINDOW_MS, 20 ms) and sent as one
`group_send` after the answer.

Only the success path is handled here. Anything else goes, with the body already read, to the Django
endpoint, which answers it as before: another kind of credential (a user's API token or session), a
token for another job, a superseded or unknown token (401/403/404/409), a batch with a bad point or too
many points (the 4xx naming it), a body that is not JSON or not UTF-8, a database error. The storing
rules are the ingest service's own (first copy wins per (job, key, step); ids grow in commit order per
job), because the statement is the service's statement with the token check put in front.

Off with `T4DM_FAST_INGEST=0`, and always off on SQLite (the embedded default), where the Django path
serves every request. The body limits (t4dm_site/asgi_limits.py) sit in front of this, as before.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import re
import time

from django.conf import settings

logger = logging.getLogger(__name__)

_PATH = re.compile(r"^/api/v1/ingest/jobs/([^/]+)/metrics$")
_answer_headers: dict[tuple[str, bool], list[tuple[bytes, bytes]]] = {}


def answer_headers(path: str, secure: bool, body: bytes) -> list[tuple[bytes, bytes]]:
    """The headers of Django's JSON answer `body` to `path`: its content type and what the middleware
    adds to it (SecurityMiddleware, XFrameOptionsMiddleware, django-csp's Content-Security-Policy; HSTS
    when `secure`), read once from those middleware themselves."""
    found = _answer_headers.get((path, secure))
    if found is None:
        from csp.middleware import CSPMiddleware
        from django.http import HttpRequest, HttpResponse
        from django.middleware.clickjacking import XFrameOptionsMiddleware
        from django.middleware.security import SecurityMiddleware

        request = HttpRequest()
        request.method, request.path, request.path_info = "POST", path, path
        request.is_secure = lambda: secure
        response = HttpResponse(b"", content_type="application/json; charset=utf-8")
        for middleware in (CSPMiddleware, XFrameOptionsMiddleware, SecurityMiddleware):  # innermost first
            response = middleware(HttpResponse).process_response(request, response)
        found = _answer_headers[(path, secure)] = [
            (name.lower().encode("latin-1"), value.encode("latin-1"))
            for name, value in response.items()
            if name.lower() != "content-length"
        ]
    return [*found, (b"content-length", str(len(body)).encode())]


def request_secure(scope) -> bool:
    """request.is_secure() as Django decides it (SECURE_PROXY_SSL_HEADER, else the ASGI scheme)."""
    proxy = settings.SECURE_PROXY_SSL_HEADER
    headers = scope.get("headers", [])
    if proxy:
        name, secure_value = proxy
        wanted = name.removeprefix("HTTP_").lower().replace("_", "-").encode()
        values = [value for key, value in headers if key.lower() == wanted]
        if values:
            return b",".join(values).decode("latin-1").split(",", 1)[0].strip() == secure_value
    return scope.get("scheme") == "https"


def enabled() -> bool:
    return os.environ.get("T4DM_FAST_INGEST", "1").strip().lower() not in {
        "0",
        "false",
        "no",
        "off",
    } and settings.DATABASES["default"]["ENGINE"].endswith("postgresql")


def _connection_kwargs() -> dict:
    """psycopg connection arguments from Django's own (settings.DATABASES['default'])."""
    from django.db import connections

    params = connections["default"].get_connection_params()
    for name in ("cursor_factory", "context"):
        params.pop(name, None)
    # Prepared statements are what make a repeated statement cheap for the database (no parse and plan
    # per batch); Django turns them off by default for transaction-mode poolers: T4DM_FAST_INGEST_PREPARE=0
    # does so here too.
    prepare = os.environ.get("T4DM_FAST_INGEST_PREPARE", "1").strip().lower() not in {
        "0",
        "false",
        "no",
        "off",
    }
    params["prepare_threshold"] = 1 if prepare else None
    # A one-step batch's statement runs in ~0.5 ms; its commit waits ~3.5 ms for the WAL flush on this
    # machine's disk. T4DM_INGEST_SYNCHRONOUS_COMMIT=off answers before the flush: a PostgreSQL crash
    # may then lose the last fraction of a second of answered batches (never a half batch, never a
    # duplicate). Off by default: an answered batch is on disk.
    if os.environ.get("T4DM_INGEST_SYNCHRONOUS_COMMIT", "on").strip().lower() in {"off", "0", "false", "no"}:
        params["options"] = (params.get("options", "") + " -c synchronous_commit=off").strip()
    params["autocommit"] = True
    return params


class _Pool:
    """A few async connections of this process's event loop, opened when first needed."""

    def __init__(self) -> None:
        self._pool = None
        self._lock: asyncio.Lock | None = None

    async def get(self):
        if self._pool is None:
            if self._lock is None:
                self._lock = asyncio.Lock()
            async with self._lock:
                if self._pool is None:
                    from psycopg import AsyncConnection
                    from psycopg_pool import AsyncConnectionPool

                    kwargs = _connection_kwargs()
                    pool = AsyncConnectionPool(
                        kwargs=kwargs,
                        connection_class=AsyncConnection,
                        min_size=1,
                        max_size=int(os.environ.get("T4DM_FAST_INGEST_CONNECTIONS", "4")),
                        timeout=10,
                        open=False,
                    )
                    await pool.open()
                    self._pool = pool
        return self._pool


_pool = _Pool()
_coalescer = None


async def _broadcast(job_pk: int, message: dict) -> None:
    """To the job's viewers: gathered per job for T4DM_INGEST_BROADCAST_WINDOW_MS (default 20) and sent
    after the answer (experiments/tracking/live.py `PointsCoalescer`); `0` sends each batch before
    answering."""
    global _coalescer
    from experiments.tracking.live import PointsCoalescer, broadcast_async

    if _coalescer is None:
        window = float(os.environ.get("T4DM_INGEST_BROADCAST_WINDOW_MS", "20")) / 1000
        _coalescer = PointsCoalescer(window) if window > 0 else False
    if _coalescer:
        _coalescer.add(job_pk, message)
    else:
        await broadcast_async(job_pk, message)


_route_label: str | None = None
_SOME_PATH = "/api/v1/ingest/jobs/job-001/metrics"  # one of this endpoint's paths (its route, its headers)


async def _store(job_pk: int, token: str, text: str):
    """The stored batch, or None where the Django endpoint must answer (see the module docstring)."""
    from experiments.tracking.ingest import INSERT_POSTGRESQL_JOB_TOKEN, statement_params, stored_from_row
    from t4dm_site.models import hash_token

    pool = await _pool.get()
    params = statement_params(job_pk, text, time.time(), token_hash=hash_token(token))
    async with pool.connection() as conn:
        cursor = await conn.execute(INSERT_POSTGRESQL_JOB_TOKEN, params)
        return stored_from_row(await cursor.fetchone())


def _job_pk(path_id: str, token: str) -> int | None:
    """The job both the path and the token name, else None (the endpoint answers the mismatch)."""
    from t4dm_site.auth import job_token_pk
    from t4dm_site.errors import NotFound
    from t4dm_site.public_ids import parse_public_id

    named = job_token_pk(token)
    if named is None:
        return None
    try:
        pk = parse_public_id("job", path_id)
    except NotFound:
        return None
    return pk if pk == named else None


def _observe(started: float) -> None:
    """The request latency histogram (/metrics), under the route label Django's path would use."""
    global _route_label
    from t4dm_site.metrics import REQUEST_LATENCY

    if _route_label is None:
        from django.urls import resolve

        _route_label = resolve(_SOME_PATH).route or "unmatched"
    REQUEST_LATENCY.labels("POST", _route_label, "200").observe(time.perf_counter() - started)


class FastIngestMiddleware:
    """ASGI middleware in front of Django (see the module docstring)."""

    def __init__(self, app) -> None:
        self.app = app
        self.enabled = enabled()

    async def __call__(self, scope, receive, send):
        if not self.enabled or scope["type"] != "http" or scope.get("method") != "POST":
            return await self.app(scope, receive, send)
        match = _PATH.match(scope.get("path", ""))
        if match is None or scope.get("root_path"):
            return await self.app(scope, receive, send)
        token = None
        for name, value in scope.get("headers", []):
            if name.lower() == b"authorization":
                scheme, _, raw = value.decode("latin-1").partition(" ")
                token = raw.strip() if scheme.lower() == "bearer" else None
                break
        job_pk = _job_pk(match.group(1), token) if token else None
        if job_pk is None:
            return await self.app(scope, receive, send)
        started = time.perf_counter()
        body = await read_body(receive)
        if body is None:  # the client went away (or the body limit cut it)
            return
        stored = None
        if b"\x00" not in body:
            try:
                stored = await _store(job_pk, token, body.decode("utf-8"))
            except UnicodeDecodeError:
                pass
            except Exception:  # noqa: BLE001 - not JSON, a value PostgreSQL cannot read, a lost connection
                logger.debug("fast ingest of job %s fell back to the endpoint", job_pk, exc_info=True)
        if stored is None:
            return await self.app(scope, _replay(body, receive), send)
        from experiments.tracking.ingest import ingest_result, points_message

        if stored.created:
            await _broadcast(job_pk, points_message(stored))
        result = ingest_result(stored)
        answer = json.dumps({"created": result.created, "duplicates": result.duplicates}).encode()
        headers = answer_headers(_SOME_PATH, request_secure(scope), answer)
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": answer})
        _observe(started)


async def read_body(receive) -> bytes | None:
    """The whole request body, or None when the client went away first (or the body limit cut it)."""
    chunks = []
    while True:
        message = await receive()
        if message["type"] != "http.request":
            return None
        chunks.append(message.get("body", b""))
        if not message.get("more_body"):
            return b"".join(chunks)


def _replay(body: bytes, receive):
    """`receive` for the Django endpoint: the body already read, then the connection's own messages."""
    sent = False

    async def replayed():
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return replayed
