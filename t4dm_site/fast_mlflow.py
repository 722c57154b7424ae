"""The MLflow client's lean path: `POST /api/2.0/mlflow/runs/log-batch` (metrics only) and
`POST /api/2.0/mlflow/runs/log-metric` with a user's API token, answered in the ASGI application before
Django's request stack, on PostgreSQL.

The `mlflow` client sends one request per `log_metric` / `log_metrics` call, live, usually one step. Through
Django each costs ~7 ms of web-process CPU: the middleware list, ninja, the token and roles queries, the
run lookup, then the ingest's lock and insert; here ~1 ms (benchmarks/mlflow_server_cpu.py). It is one
statement on the worker ingest's async connections (t4dm_site/fast_ingest.py, autocommit; the run's job
is looked up once per run and process): `_statement()` below builds it from the ingest statement
(experiments/tracking/ingest.py `_INSERT_POSTGRESQL`) with, in front, what Django's path checks before it
stores anything:

- the API token (t4dm_site/services.py `api_token_authenticate`): its hash, not revoked, its user active;
  its `last_used_at` is refreshed at most once a minute, as there;
- the roles `mlflow_api` requires (t4dm_site/auth.py `trainer_auth`): a researcher or an admin (group or
  superuser);
- the run (experiments/mlflow_compat/services.py `run_get_for_logging`): only the simplest case, the
  token's user owns the run's job, and the run is active (`_active`); its job row is locked (ids grow in
  commit order per job, as in every ingest);
- the body as `run_log_batch` reads it: a JSON object, `run_id` a string (log-metric: `run_id` or else
  `run_uuid`), no params or tags, 1 to 1,000 metrics (and at most T4DM_INGEST_MAX_BATCH), each an object
  with a string key, a JSON number value (NaN, Infinity and strings go to Django), an integer step
  (default 0) and an integer timestamp in ms (default: now), every (key, step) once in the batch and none
  already stored (MLflow keeps every value at a step: Django stores the others in MetricValueExtra).

Then the ingest statement's own checks (key pattern, finite values, non-negative steps) and storing: the
points (wall time = timestamp / 1000), their rollups and the job's latest values, in that one statement;
the new points go to the job's viewers through fast_ingest's coalescer; the answer is Django's: 200, `{}`,
the same headers. A (key, step) stored by a concurrent request between this statement's snapshot and
its lock on the job row is never skipped silently: the statement refuses (the job row changed under it)
or the insert meets the unique index, nothing is stored, and Django answers.

Anything else goes, body replayed, to Django, which answers it as before: a session, another credential,
a refused or unprivileged token (401/403, the rate limit of refused tokens), a shared run or an admin's
run of another user, a deleted run, params or tags, a repeated step, any value or field Django would
refuse or coerce, a body PostgreSQL cannot read, a host Django would refuse, a plain-http request Django
would redirect, a database error. A tracking run has no heartbeat (run_create clears it), so the lost-job
reaper never takes it, however it logs.

On with the worker ingest's lean path (T4DM_FAST_INGEST, PostgreSQL only); the body limits
(t4dm_site/asgi_limits.py) sit in front of it. /metrics counts the requests it answered
(`t4dm_mlflow_lean_requests_total`) beside the latency histogram both paths feed.
"""

from __future__ import annotations

import logging
import re
import time

from django.conf import settings
from prometheus_client import Counter

from t4dm_site import fast_ingest

logger = logging.getLogger(__name__)

_PATHS = {"/api/2.0/mlflow/runs/log-batch": False, "/api/2.0/mlflow/runs/log-metric": True}
_ANSWER = b"{}"
# The largest integer a float8 holds exactly: a timestamp beyond it is divided as Python would only by luck.
_EXACT = 2**53
_MAX_METRICS = 1000  # experiments/mlflow_compat/services.py MAX_METRICS_PER_BATCH
# Where the run's id is in the body: only a hint for the run's job (the statement compares the body's
# own run_id, as PostgreSQL reads it, with the run).
_RUN_ID = re.compile(rb'"run_(?:id|uuid)"\s*:\s*"([0-9A-Za-z_-]{1,64})"')


def _statement() -> str | None:
    """The ingest statement with the MLflow checks in front (by the same marker replacement as
    INSERT_POSTGRESQL_JOB_TOKEN, so that changes to the statement's body apply here too); None, and the
    lean path off, if the statement no longer has the markers."""
    from django.contrib.auth import get_user_model
    from django.contrib.auth.models import Group

    from experiments.mlflow_compat.models import MLflowRun
    from experiments.tracking import ingest
    from t4dm_site.models import ApiToken

    users = get_user_model()
    tokens, runs, jobs = ApiToken._meta.db_table, MLflowRun._meta.db_table, ingest._JOBS
    user_groups, groups = users.groups.through._meta.db_table, Group._meta.db_table
    prefix = f"""WITH req AS (
    SELECT %(body)s::json AS j
), sent AS (
    -- log-metric's body is one metric; log-batch's metrics are a list.
    SELECT j, CASE WHEN %(single)s THEN json_build_array(j) ELSE j -> 'metrics' END AS metrics,
           CASE WHEN %(single)s THEN COALESCE(NULLIF(j ->> 'run_id', ''), j ->> 'run_uuid')
                ELSE j ->> 'run_id' END AS run_id
    FROM req
), token AS (
    SELECT t.id, t.user_id FROM {tokens} t JOIN {users._meta.db_table} u ON u.id = t.user_id
    WHERE t.token_hash = %(token_hash)s AND t.revoked_at IS NULL AND u.is_active
      AND (u.is_superuser OR EXISTS (
          SELECT 1 FROM {user_groups} ug JOIN {groups} g ON g.id = ug.group_id
          WHERE ug.user_id = u.id AND g.name IN ('admin', 'researcher')))
), used AS (
    UPDATE {tokens} SET last_used_at = now()
    WHERE id = (SELECT id FROM token) AND (last_used_at IS NULL OR last_used_at < now() - interval '60 seconds')
), job AS (
    SELECT id FROM {jobs}
    WHERE id = %(job)s AND owner_id = (SELECT user_id FROM token)
      AND EXISTS (SELECT 1 FROM {runs} r WHERE r.job_id = %(job)s AND r.lifecycle_stage = 'active'
                  AND r.run_uuid = (SELECT run_id FROM sent))
    FOR UPDATE
), metric AS (
    SELECT m, i, (
        json_typeof(m) = 'object' AND json_typeof(m -> 'key') = 'string' AND json_typeof(m -> 'value') = 'number'
        AND COALESCE(json_typeof(m -> 'step'), 'null') IN ('number', 'null')
        AND COALESCE(json_typeof(m -> 'timestamp'), 'null') IN ('number', 'null')
    ) IS TRUE AS good
    FROM sent, json_array_elements(CASE json_typeof(metrics) WHEN 'array' THEN metrics ELSE '[]' END)
               WITH ORDINALITY AS e(m, i)
), shaped AS (
    SELECT (
        json_typeof(j) = 'object' AND json_typeof(metrics) = 'array'
        AND CASE WHEN %(single)s THEN
                COALESCE(json_typeof(j -> 'run_id'), 'null') IN ('string', 'null')
                AND COALESCE(json_typeof(j -> 'run_uuid'), 'null') IN ('string', 'null')
            ELSE json_typeof(j -> 'run_id') = 'string'
                AND (j -> 'params' IS NULL OR (json_typeof(j -> 'params') = 'array' AND json_array_length(j -> 'params') = 0))
                AND (j -> 'tags' IS NULL OR (json_typeof(j -> 'tags') = 'array' AND json_array_length(j -> 'tags') = 0))
            END
        AND (SELECT count(*) FROM metric) BETWEEN 1 AND %(limit)s
        AND (SELECT bool_and(good) FROM metric)
    ) IS TRUE AS ok
    FROM sent
), body AS (
    -- The metrics as the ingest's points: wall time in seconds (Python's timestamp / 1000: exact below 2**53).
    SELECT CASE WHEN (SELECT ok FROM shaped) THEN (
        SELECT CASE WHEN count(DISTINCT (key, step)) = count(*) AND bool_and(abs(ts) <= {_EXACT}) THEN
            json_agg(json_build_object('key', m -> 'key', 'step', step, 'wall_time', ts::float8 / 1000,
                     -- Python reads the JSON integer -0 as 0.
                     'value', CASE WHEN m ->> 'value' = '-0' THEN '0'::json ELSE m -> 'value' END) ORDER BY i)
        END
        FROM (SELECT m, i, m ->> 'key' AS key, COALESCE((m ->> 'step')::bigint, 0) AS step,
                     COALESCE((m ->> 'timestamp')::bigint, %(now_ms)s) AS ts FROM metric) AS c
    ) END AS points
), sent_body AS ("""
    accepted = f"""SELECT EXISTS (SELECT 1 FROM job)
           AND NOT EXISTS (SELECT 1 FROM incoming i JOIN {ingest._POINTS} p
                           ON p.job_id = %(job)s AND p.key = i.key AND p.step = i.step)
           AND (SELECT json_typeof(points) = 'array' FROM body)"""
    text = ingest._INSERT_POSTGRESQL
    if any(text.count(marker) != 1 for marker in ("WITH body AS (", ingest._ACCEPTED)):
        logger.error("the MLflow lean path is off: the ingest statement no longer has its markers")
        return None
    # Where the statement still skips stored points by ON CONFLICT, none is skipped here: a point stored
    # after the check above (by a request that held the job's lock) fails the insert as a whole.
    conflict = "ON CONFLICT (job_id, key, step) DO NOTHING"
    return text.replace("WITH body AS (", prefix).replace(ingest._ACCEPTED, accepted).replace(conflict, "")


_sql: str | None = None
_jobs: dict[str, int] = {}  # run id -> its job's pk (never changes); the statement checks it again
_route_labels: dict[str, str] = {}
# The requests answered here (/metrics: t4dm_mlflow_lean_requests_total).
served = Counter(
    "t4dm_mlflow_lean_requests", "MLflow logging requests answered before Django (fast_mlflow.py)"
)


async def _job_pk(conn, run_id: str) -> int | None:
    pk = _jobs.get(run_id)
    if pk is None:
        from experiments.mlflow_compat.models import MLflowRun

        cursor = await conn.execute(
            f"SELECT job_id FROM {MLflowRun._meta.db_table} WHERE run_uuid = %s", (run_id,)
        )
        row = await cursor.fetchone()
        if row is None:
            return None
        if len(_jobs) > 10_000:
            _jobs.clear()
        pk = _jobs[run_id] = row[0]
    return pk


async def _store(single: bool, token: str, body: bytes):
    """(job pk, stored batch), or None where Django must answer."""
    global _sql
    from experiments.tracking.ingest import statement_params, stored_from_row
    from t4dm_site.models import hash_token

    hint = _RUN_ID.search(body)
    if hint is None or b"\x00" in body:
        return None
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        return None
    if _sql is None:
        _sql = _statement() or ""
    if not _sql:
        return None
    now = time.time()
    pool = await fast_ingest._pool.get()
    async with pool.connection() as conn:
        job_pk = await _job_pk(conn, hint.group(1).decode())
        if job_pk is None:
            return None
        params = statement_params(
            job_pk, text, now, token_hash=hash_token(token), single=single, now_ms=int(now * 1000),
            limit=min(_MAX_METRICS, settings.INGEST_MAX_BATCH),
        )  # fmt: skip
        cursor = await conn.execute(_sql, params)
        stored = stored_from_row(await cursor.fetchone())
    return None if stored is None else (job_pk, stored)


def _bearer(headers) -> str | None:
    """The raw API token of the one Authorization header, as UserAuth reads it; None for anything else
    (Django joins repeated headers, and a session or another credential is its to check)."""
    found = [value for name, value in headers if name.lower() == b"authorization"]
    if len(found) != 1:
        return None
    scheme, _, raw = found[0].decode("latin-1").partition(" ")
    raw = raw.strip()
    return raw if scheme.lower() == "bearer" and raw.startswith("t4dm_") else None


_hosts: dict[bytes, bool] = {}


def _host_allowed(headers) -> bool:
    """Whether Django would take the request's Host (CommonMiddleware's get_host: else a 400)."""
    if settings.USE_X_FORWARDED_HOST:
        return False
    found = [value for name, value in headers if name.lower() == b"host"]
    if len(found) != 1:
        return False
    allowed = _hosts.get(found[0])
    if allowed is None:
        from django.http.request import split_domain_port, validate_host

        domain, _ = split_domain_port(found[0].decode("latin-1"))
        allowed = bool(domain) and validate_host(domain, settings.ALLOWED_HOSTS)
        if len(_hosts) > 100:
            _hosts.clear()
        _hosts[found[0]] = allowed
    return allowed


def _observe(path: str, started: float) -> None:
    """The request latency histogram (/metrics) under Django's route label, and the lean path's counter."""
    from t4dm_site.metrics import REQUEST_LATENCY

    label = _route_labels.get(path)
    if label is None:
        from django.urls import resolve

        label = _route_labels[path] = resolve(path).route or "unmatched"
    REQUEST_LATENCY.labels("POST", label, "200").observe(time.perf_counter() - started)
    served.inc()


class FastMlflowMiddleware:
    """ASGI middleware in front of Django (see the module docstring)."""

    def __init__(self, app) -> None:
        self.app = app
        # CommonMiddleware's user-agent refusal and www redirect, where configured, stay Django's.
        self.enabled = (
            fast_ingest.enabled() and not settings.DISALLOWED_USER_AGENTS and not settings.PREPEND_WWW
        )

    async def __call__(self, scope, receive, send):
        if not self.enabled or scope["type"] != "http" or scope.get("method") != "POST":
            return await self.app(scope, receive, send)
        path = scope.get("path", "")
        single = _PATHS.get(path)
        if single is None or scope.get("root_path"):
            return await self.app(scope, receive, send)
        headers = scope.get("headers", [])
        token = _bearer(headers)
        secure = fast_ingest.request_secure(scope)
        if (
            token is None
            or not _host_allowed(headers)
            or (settings.SECURE_SSL_REDIRECT and not secure)  # Django redirects it (SECURE_REDIRECT_EXEMPT)
        ):
            return await self.app(scope, receive, send)
        started = time.perf_counter()
        body = await fast_ingest.read_body(receive)
        if body is None:  # the client went away (or the body limit cut it)
            return
        done = None
        try:
            done = await _store(single, token, body)
        except Exception:  # noqa: BLE001 - not JSON, a value PostgreSQL cannot read, a lost connection
            logger.debug("MLflow lean path fell back to Django for %s", path, exc_info=True)
        if done is None:
            return await self.app(scope, fast_ingest._replay(body, receive), send)
        job_pk, stored = done
        if stored.created:
            from experiments.tracking.ingest import points_message

            await fast_ingest._broadcast(job_pk, points_message(stored))
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": fast_ingest.answer_headers(path, secure, _ANSWER),
            }
        )
        await send({"type": "http.response.body", "body": _ANSWER})
        _observe(path, started)
