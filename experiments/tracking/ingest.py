"""The tracking ingest service: the single writer of metric points and the single broadcaster of them.

Every producer — the Celery training worker, the Python SDK, an outside script — sends batches here
(through the HTTP endpoint). A batch is all-or-nothing: one bad point rejects the whole batch with a
message naming it, and nothing is stored. Points are idempotent on (job, key, step): a retried batch
stores nothing twice. The first value stored for a (job, key, step) wins; a later batch's value for
it is counted as a duplicate and dropped (inside one batch, the last value sent for it is the one
inserted). Workers rely on this when they resend after a timeout. The MLflow-compatible API, whose
clients may log several values at one step, keeps the others beside it (mlflow_compat's
MetricValueExtra) and merges them back into get-history.

On PostgreSQL a batch is one statement that takes the request body as it came: the database parses
and checks the points, inserts the ones not stored yet (under the job row's lock), folds the inserted
rows into the series' rollups and the job's latest values (data-modifying CTEs) and returns them, as
JSON text, for the broadcast. The web process handles no point one by one. A batch the statement
refuses goes to the Python validator, which names the problem. Other databases (the embedded SQLite)
take the ORM path, with the same rules and guarantees (tests/experiments/test_ingest.py and
tests/tracking/test_ingest_statement.py run on both).
"""

from __future__ import annotations

import json
import math
import re
import time
from dataclasses import dataclass

from django.conf import settings
from django.db import DataError, connection, transaction

from experiments.models import MetricPoint, MetricRollup, TrainingJob
from experiments.tracking.live import broadcast_on_commit
from t4dm_site.errors import Conflict, InvalidInput, NotFound, PayloadTooLarge
from t4dm_site.public_ids import format_public_id

# The same pattern runs in PostgreSQL (`~`) and in Python (fullmatch): `-` last, no Python-only syntax.
METRIC_KEY = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_./-]{0,99}$")
MAX_STEP = 2**63 - 1  # a PostgreSQL bigint
# A batch of at most this many points reaches live viewers with its points; a larger one as its id range,
# which each viewer reads (points_message).
LIVE_INLINE_POINTS = 200

# (id, key, step, value, wall_time) of a stored point.
Row = tuple[int, str, int, float, float]


def live_points(rows) -> list[dict]:
    """Stored points as the live broadcast carries them (the statement's JSON text has the same shape)."""
    return [{"id": i, "key": key, "step": step, "value": value, "t": t} for i, key, step, value, t in rows]


@dataclass(frozen=True)
class PointIn:
    key: str
    step: int
    value: float
    wall_time: float | None = None
    epoch: float | None = None


@dataclass(frozen=True)
class IngestResult:
    created: int
    duplicates: int


def _problems(index: int, p: PointIn, bad_keys: set[str]) -> list[dict]:
    found = []
    if p.key in bad_keys:
        found.append(
            {
                "index": index,
                "key": p.key,
                "message": "bad key: use 1-100 characters of letters, digits, _ . / -",
            }
        )
    if not math.isfinite(p.value):
        found.append({"index": index, "key": p.key, "message": f"value {p.value} is not a finite number"})
    if p.step < 0:
        found.append({"index": index, "key": p.key, "message": f"step {p.step} is negative"})
    elif p.step > MAX_STEP:
        found.append({"index": index, "key": p.key, "message": f"step {p.step} is larger than {MAX_STEP}"})
    for name in ("wall_time", "epoch"):
        extra = getattr(p, name)
        if extra is not None and not math.isfinite(extra):
            found.append({"index": index, "key": p.key, "message": f"{name} {extra} is not a finite number"})
    return found


def _validate(points: list[PointIn]) -> None:
    if len(points) > settings.INGEST_MAX_BATCH:
        raise PayloadTooLarge(
            f"batch has {len(points)} points; the limit is {settings.INGEST_MAX_BATCH} — split it into smaller batches"
        )
    # A batch has a handful of distinct keys: check each once. Then one cheap pass finds whether any
    # point is bad at all; only then is the batch walked again to name every problem.
    bad_keys = {
        key for key in {p.key for p in points} if not (isinstance(key, str) and METRIC_KEY.fullmatch(key))
    }
    isfinite = math.isfinite
    clean = not bad_keys and all(
        isfinite(p.value)
        and 0 <= p.step <= MAX_STEP
        and (p.wall_time is None or isfinite(p.wall_time))
        and (p.epoch is None or isfinite(p.epoch))
        for p in points
    )
    if clean:
        return
    problems = [problem for index, p in enumerate(points) for problem in _problems(index, p, bad_keys)]
    first = problems[0]
    raise InvalidInput(
        f"{len(problems)} point(s) rejected, nothing stored; first: point {first['index']} "
        f"({first['key']!r}): {first['message']}",
        details=problems[:50],
        code="invalid_points",
    )


# --- PostgreSQL: one statement per batch -------------------------------------------------------------

_POINTS = MetricPoint._meta.db_table
_ROLLUPS = MetricRollup._meta.db_table
_JOBS = TrainingJob._meta.db_table
# The statement takes the request body as it came (json): PostgreSQL parses it, checks every point,
# and — only when all are good — inserts the new ones, folds them into the rollups, merges the latest
# values into the job row and returns the inserted points as the broadcast's JSON. The web process
# touches no point. A batch that fails a check (or that PostgreSQL cannot even read) inserts nothing;
# the caller then runs the Python validator, which names the bad point.
#
# What a point costs PostgreSQL (benchmarks/ingest_statement.py measures it) is mostly the row and
# its three index entries; the rest is kept to one pass where it can be:
# - No `ON CONFLICT` on the points: speculative insertion (a lock, an extra index probe and a WAL
#   record per row) cost a third of the insert. Repeats are filtered before the insert instead, under
#   the job row's lock, which every writer of a job's points holds (`locked`): a point above the
#   highest step stored for the batch's keys (`stored`, one index probe per key) cannot be a repeat;
#   only the others are probed one by one (a resent batch). The filter reads the statement's
#   snapshot, which must therefore hold everything committed before the lock was granted: `ok` is
#   false when the job row changed between the snapshot and the lock (a variant that takes the lock
#   in this statement and waited for another batch of the job): the caller goes the usual way, where
#   the lock comes before the statement's snapshot. A writer that ignored the lock would still meet
#   the unique index (an error, never a second copy).
# - Keys are checked once per distinct key, on the JSON text json_to_recordset gives for a `json`
#   column (a string is always re-quoted: `"name"`; a number, `null` or an object never starts with
#   `"`), so each point's key is that text without its quotes, not a JSON parse per point.
# - The rollups and the latest values come from one hashed pass over the inserted rows: each bucket's
#   extremes and last step are min/max over [value, step] arrays (the step split in two exact float8
#   halves), whose order is the value and then the step: the earliest step on a tie, as before.
# - The broadcast JSON is concatenated text (keys match the key pattern: nothing to escape).
_INSERT_POSTGRESQL = f"""
WITH body AS (
    SELECT %(body)s::json -> 'points' AS points
), incoming AS (
    SELECT btrim(t.raw_key::text, '"') AS key, t.raw_key::text AS raw_key, t.step, t.value,
           COALESCE(t.wall_time, %(now)s) AS wall_time, t.wall_time AS sent_wall_time, t.epoch, t.i
    FROM body, ROWS FROM (
        json_to_recordset(CASE json_typeof(points) WHEN 'array' THEN points ELSE '[]' END)
        AS (key json, step bigint, value float8, wall_time float8, epoch float8)
    ) WITH ORDINALITY AS t(raw_key, step, value, wall_time, epoch, i)
), checked AS (
    -- A value PostgreSQL cannot read as its column's type (1.5 as a step, 1e400, "abc") is an error,
    -- handled like these.
    SELECT count(*) AS received, count(*) FILTER (WHERE (
        step >= 0 AND value NOT IN ('NaN', 'Infinity', '-Infinity')
        AND (sent_wall_time IS NULL OR sent_wall_time NOT IN ('NaN', 'Infinity', '-Infinity'))
        AND (epoch IS NULL OR epoch NOT IN ('NaN', 'Infinity', '-Infinity'))
    ) IS NOT TRUE) AS bad
    FROM incoming
), keys AS (
    SELECT raw_key, (left(raw_key, 1) = '"' AND btrim(raw_key, '"') ~ %(key_pattern)s) IS TRUE AS good
    FROM (SELECT DISTINCT raw_key FROM incoming OFFSET 0) AS distinct_keys
), locked AS (
    SELECT ctid AS version FROM {_JOBS} WHERE id = %(job)s FOR UPDATE
), accepted AS (
    SELECT (SELECT json_typeof(points) = 'array' FROM body)
           AND (SELECT received <= %(limit)s AND bad = 0 FROM checked)
           AND NOT EXISTS (SELECT FROM keys WHERE NOT good)
           AND (SELECT version FROM locked) = (SELECT ctid FROM {_JOBS} WHERE id = %(job)s) AS ok
), stored AS (
    SELECT COALESCE(max((
        SELECT p.step FROM {_POINTS} AS p WHERE p.job_id = %(job)s AND p.key = btrim(raw_key, '"')
        ORDER BY p.step DESC LIMIT 1
    )), -1) AS top
    FROM keys
), inserted AS (
    -- Within a batch the last value for a (key, step) wins; a point already stored is kept.
    INSERT INTO {_POINTS} (job_id, key, step, value, wall_time, epoch)
    SELECT DISTINCT ON (n.key, n.step) %(job)s, n.key, n.step, n.value, n.wall_time, n.epoch
    FROM incoming AS n
    WHERE (SELECT ok FROM accepted) AND (n.step > (SELECT top FROM stored) OR NOT EXISTS (
        -- OFFSET 0: probed through the unique index, never joined to all of the job's points.
        SELECT FROM {_POINTS} AS p WHERE p.job_id = %(job)s AND p.key = n.key AND p.step = n.step OFFSET 0
    ))
    ORDER BY n.key, n.step, n.i DESC
    RETURNING id, key, step, value, wall_time
), buckets AS (
    -- Each bucket also remembers its first step and the steps of its extremes (the earliest on a
    -- tie), so a downsampled read places every point at its own step (M4).
    SELECT key, step / %(width)s::bigint AS bucket, min(value) AS lo, max(value) AS hi, count(*) AS n,
           min(wall_time) AS first_wall_time, max(step) AS last_step, min(step) AS first_step,
           min(ARRAY[value, (step >> 26)::float8, (step & 67108863)::float8]) AS lo_at,
           max(ARRAY[value, -(step >> 26)::float8, -(step & 67108863)::float8]) AS hi_at,
           max(ARRAY[(step >> 26)::float8, (step & 67108863)::float8, value]) AS last_at
    FROM inserted GROUP BY key, step / %(width)s::bigint
), folded AS (
    INSERT INTO {_ROLLUPS} AS r (job_id, key, bucket, lo, hi, n, first_wall_time, last_step,
                                 first_step, lo_step, hi_step)
    SELECT %(job)s, key, bucket, lo, hi, n, first_wall_time, last_step, first_step,
           (lo_at[2]::bigint << 26) | lo_at[3]::bigint, ((-hi_at[2])::bigint << 26) | (-hi_at[3])::bigint
    FROM buckets
    ON CONFLICT (job_id, key, bucket) DO UPDATE SET
        lo = LEAST(r.lo, EXCLUDED.lo),
        hi = GREATEST(r.hi, EXCLUDED.hi),
        n = r.n + EXCLUDED.n,
        first_wall_time = LEAST(r.first_wall_time, EXCLUDED.first_wall_time),
        last_step = GREATEST(r.last_step, EXCLUDED.last_step),
        first_step = LEAST(r.first_step, EXCLUDED.first_step),
        lo_step = CASE WHEN EXCLUDED.lo < r.lo THEN EXCLUDED.lo_step ELSE r.lo_step END,
        hi_step = CASE WHEN EXCLUDED.hi > r.hi THEN EXCLUDED.hi_step ELSE r.hi_step END
), latest AS (
    UPDATE {_JOBS} SET latest_metrics = latest_metrics || (
        SELECT jsonb_object_agg(key, last_at[3])
        FROM (SELECT DISTINCT ON (key) key, last_at FROM buckets ORDER BY key, bucket DESC) AS last
    )
    WHERE id = %(job)s AND EXISTS (SELECT FROM buckets)
)
SELECT (SELECT ok FROM accepted), (SELECT received FROM checked), count(*), min(id), max(id),
       -- The live broadcast's points as JSON text, for a batch of at most LIVE_INLINE_POINTS points
       -- (NULL for a larger one: each viewer reads its id range, tracking/consumers.py).
       '[' || string_agg('{{"id":' || id || ',"key":"' || key || '","step":' || step || ',"value":' || value
                         || ',"t":' || wall_time || '}}', ',' ORDER BY id)
              FILTER (WHERE (SELECT received FROM checked) <= %(inline)s) || ']'
FROM inserted
"""


@dataclass(frozen=True)
class _Stored:
    received: int  # points in the batch, repeats included
    created: int
    first_id: int | None
    last_id: int | None
    # The inserted points in id order, [{"id", "key", "step", "value", "t"}, ...], for a batch of at most
    # LIVE_INLINE_POINTS points; None for a larger one (or when nothing was inserted).
    points_json: str | None


# The worker's one-round-trip variant (t4dm_site/fast_ingest.py): the same statement, which also checks
# the job token and takes the job row's lock itself, before any point gets an id. `ok` is false when the
# token does not match the job's running attempt or the batch has a problem: the caller then goes the
# usual way, which answers the 401/403/404/409 or names the bad point.
_JOB_TOKEN_LOCK = f"""WITH job AS (
    SELECT id FROM {_JOBS} WHERE id = %(job)s AND token_hash = %(token_hash)s FOR UPDATE
), body AS ("""
_ACCEPTED = "SELECT (SELECT json_typeof(points) = 'array' FROM body)"
assert _INSERT_POSTGRESQL.count("WITH body AS (") == 1 and _INSERT_POSTGRESQL.count(_ACCEPTED) == 1
INSERT_POSTGRESQL_JOB_TOKEN = _INSERT_POSTGRESQL.replace("WITH body AS (", _JOB_TOKEN_LOCK).replace(
    _ACCEPTED, "SELECT EXISTS (SELECT 1 FROM job) AND (SELECT json_typeof(points) = 'array' FROM body)"
)


def statement_params(job_pk: int, body: str, now: float, **extra) -> dict:
    return {
        "body": body,
        "limit": settings.INGEST_MAX_BATCH,
        "key_pattern": METRIC_KEY.pattern,
        "now": now,
        "job": job_pk,
        "width": MetricRollup.ROLLUP_WIDTH,  # read per call: tests scale it down
        "inline": LIVE_INLINE_POINTS,
        **extra,
    }


def stored_from_row(row) -> _Stored | None:
    """The statement's one row as a stored batch; None when it refused the batch (nothing stored)."""
    ok, received, created, first_id, last_id, points_json = row
    if not ok:
        return None
    return _Stored(received, created, first_id, last_id, points_json)


def _store_postgresql(job_pk: int, body: str, now: float) -> _Stored | None:
    """None: PostgreSQL found a problem in the batch (and stored nothing)."""
    with connection.cursor() as cursor:
        cursor.execute(_INSERT_POSTGRESQL, statement_params(job_pk, body, now))
        return stored_from_row(cursor.fetchone())


def _points_json(points: list[PointIn]) -> str:
    return json.dumps(
        {
            "points": [
                {"key": p.key, "step": p.step, "value": p.value, "wall_time": p.wall_time, "epoch": p.epoch}
                for p in points
            ]
        }
    )


# --- any other database (the embedded SQLite): the ORM -----------------------------------------------


def _rollups_fold(*, job_pk: int, rows: list[Row]) -> None:
    """Fold new points into their series' fixed-width rollups (inside the ingest transaction)."""
    if not rows:
        return
    width = MetricRollup.ROLLUP_WIDTH
    # (key, bucket) -> [lo, hi, n, first wall time, last step, first step, lo step, hi step]
    fresh: dict[tuple[str, int], list] = {}
    # In step order: an extreme reached at several steps is kept at the earliest (as on PostgreSQL).
    for _, key, step, value, wall_time in sorted(rows, key=lambda row: row[2]):
        agg = fresh.get((key, step // width))
        if agg is None:
            fresh[(key, step // width)] = [value, value, 1, wall_time, step, step, step, step]
            continue
        rollup_merge(agg, [value, value, 1, wall_time, step, step, step, step])
    if connection.vendor == "sqlite":
        # One upsert statement (the PostgreSQL statement's fold): bulk_update's CASE per field and row
        # cost SQLite most of a small batch's time.
        with connection.cursor() as cursor:
            cursor.executemany(
                _UPSERT_ROLLUP_SQLITE, [(job_pk, key, bucket, *agg) for (key, bucket), agg in fresh.items()]
            )
        return
    existing = {
        (r.key, r.bucket): r
        for r in MetricRollup.objects.filter(
            job_id=job_pk, key__in={k for k, _ in fresh}, bucket__in={b for _, b in fresh}
        )
    }
    changed, new = [], []
    for (key, bucket), agg in fresh.items():
        row = existing.get((key, bucket))
        if row is None:
            row = MetricRollup(job_id=job_pk, key=key, bucket=bucket)
            _rollup_set(row, agg)
            new.append(row)
        else:
            merged = [row.lo, row.hi, row.n, row.first_wall_time, row.last_step, row.first_step,
                      row.lo_step, row.hi_step]  # fmt: skip
            _rollup_set(row, rollup_merge(merged, agg))
            changed.append(row)
    MetricRollup.objects.bulk_create(new)
    MetricRollup.objects.bulk_update(changed, _ROLLUP_FIELDS)


_ROLLUP_FIELDS = ["lo", "hi", "n", "first_wall_time", "last_step", "first_step", "lo_step", "hi_step"]
# The same rule as rollup_merge; in SQLite's upsert an unqualified column is the stored row's.
_UPSERT_ROLLUP_SQLITE = f"""
INSERT INTO {_ROLLUPS} (job_id, key, bucket, {", ".join(_ROLLUP_FIELDS)})
VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)
ON CONFLICT (job_id, key, bucket) DO UPDATE SET
    lo_step = CASE WHEN excluded.lo < lo THEN excluded.lo_step ELSE lo_step END,
    hi_step = CASE WHEN excluded.hi > hi THEN excluded.hi_step ELSE hi_step END,
    lo = min(lo, excluded.lo),
    hi = max(hi, excluded.hi),
    n = n + excluded.n,
    first_wall_time = min(first_wall_time, excluded.first_wall_time),
    last_step = max(last_step, excluded.last_step),
    first_step = min(first_step, excluded.first_step)
"""


def rollup_merge(into: list, other: list) -> list:
    """Merge two rollups given as [lo, hi, n, first wall time, last step, first step, lo step, hi step]
    (the same rule as the PostgreSQL statement: an extreme moves only to a strictly lower/higher value)."""
    if other[0] < into[0]:
        into[0], into[6] = other[0], other[6]
    if other[1] > into[1]:
        into[1], into[7] = other[1], other[7]
    into[2] += other[2]
    into[3], into[4], into[5] = min(into[3], other[3]), max(into[4], other[4]), min(into[5], other[5])
    return into


def _rollup_set(row: MetricRollup, agg: list) -> None:
    for field, value in zip(_ROLLUP_FIELDS, agg, strict=True):
        setattr(row, field, value)


def _store_orm(job_pk: int, unique: dict[tuple[str, int], PointIn], now: float) -> list[Row]:
    keys = {key for key, _ in unique}
    steps = {step for _, step in unique}
    existing = set(
        MetricPoint.objects.filter(job_id=job_pk, key__in=keys, step__in=steps).values_list("key", "step")
    )
    new = [
        MetricPoint(
            job_id=job_pk,
            key=p.key,
            step=p.step,
            value=p.value,
            wall_time=p.wall_time if p.wall_time is not None else now,
            epoch=p.epoch,
        )
        for (key, step), p in unique.items()
        if (key, step) not in existing
    ]
    created = MetricPoint.objects.bulk_create(new)
    if created and created[0].pk is None:  # a backend that cannot return ids from bulk inserts
        raise Conflict("database backend cannot return ids from bulk inserts")
    rows = [(p.pk, p.key, p.step, p.value, p.wall_time) for p in created]
    _rollups_fold(job_pk=job_pk, rows=rows)
    return rows


def _store_orm_stored(job_pk: int, points: list[PointIn], now: float) -> _Stored:
    # Within one batch the last value for a (key, step) wins, like a dict.
    unique = {(p.key, p.step): p for p in points}
    locked = TrainingJob.objects.select_for_update().only("pk", "latest_metrics").get(pk=job_pk)
    rows = _store_orm(job_pk, unique, now)
    if rows:
        latest: dict[str, tuple[int, float]] = {}
        for _, key, step, value, _ in rows:
            seen = latest.get(key)
            if seen is None or step >= seen[0]:
                latest[key] = (step, value)
        locked.latest_metrics = {**locked.latest_metrics, **{k: v for k, (_, v) in latest.items()}}
        locked.save(update_fields=["latest_metrics"])
    points_json = json.dumps(live_points(rows)) if len(points) <= LIVE_INLINE_POINTS else None
    return _Stored(
        len(points), len(rows), rows[0][0] if rows else None, rows[-1][0] if rows else None, points_json
    )


def _lock_job(job_pk: int) -> None:
    # Locking the job row serialises ingest per job: ids then grow in commit order, which is what
    # lets a reconnecting websocket ask for "everything after id N" without missing any.
    # (Ids of one job are increasing, not consecutive: a conflicting row may use up an id.)
    if not TrainingJob.objects.select_for_update().filter(pk=job_pk).values_list("pk", flat=True):
        raise NotFound(f"job {format_public_id('job', job_pk)} does not exist")


def points_message(stored: _Stored) -> dict:
    """The live broadcast of a stored batch (tracking/consumers.py `job_points`): its id range, and its
    points as JSON text when the batch had at most LIVE_INLINE_POINTS points. A larger batch (a flush, an
    import) goes out as its range alone and each viewer reads the points it lacks: the statement does
    not build, nor the channel layer carry, ~80 kB of JSON per 1,000 points that nobody may be watching."""
    message = {"type": "job.points", "first_id": stored.first_id, "last_id": stored.last_id}
    if stored.points_json is not None:
        message["points_json"] = stored.points_json
    return message


def ingest_result(stored: _Stored) -> IngestResult:
    return IngestResult(created=stored.created, duplicates=stored.received - stored.created)


def _finish(job_pk: int, stored: _Stored) -> IngestResult:
    if stored.created:
        broadcast_on_commit(job_pk, points_message(stored))
    return ingest_result(stored)


def metric_points_ingest(*, job: TrainingJob, points: list[PointIn]) -> IngestResult:
    """Store a batch given as points (tests, in-process callers); the HTTP endpoint sends the body."""
    _validate(points)
    if not points:
        return IngestResult(created=0, duplicates=0)
    now = time.time()
    with transaction.atomic():
        if connection.vendor == "postgresql":
            _lock_job(job.pk)
            stored = _store_postgresql(job.pk, _points_json(points), now)
            if stored is None:  # the validator above and the statement's checks are the same rules
                raise InvalidInput("the database refused a batch the validator passed", code="invalid_points")
        else:
            stored = _store_orm_stored(job.pk, points, now)
        return _finish(job.pk, stored)


def parse_points(body: bytes) -> list[PointIn]:
    """The request body `{"points": [...]}` as points, or ninja's 422 naming the bad field."""
    from ninja.errors import ValidationError
    from pydantic import ValidationError as PydanticError

    from experiments.schemas import PointsIn

    try:
        payload = PointsIn.model_validate_json(body)
    except PydanticError as exc:
        errors = exc.errors(include_url=False, include_context=False, include_input=False)
        raise ValidationError([{**e, "loc": ("body", "payload", *e["loc"])} for e in errors]) from None
    return [PointIn(p.key, p.step, p.value, p.wall_time, p.epoch) for p in payload.points]


def metric_points_ingest_body(*, job_pk: int, body: bytes) -> IngestResult:
    """The ingest endpoint's path: the raw JSON body. On PostgreSQL the database parses and checks it
    (no per-point Python); a batch it refuses, and every batch on other databases, goes through the
    Python parser and validator, which name the bad point or field."""
    if connection.vendor == "postgresql" and b"\x00" not in body:
        try:
            text = body.decode("utf-8")
        except UnicodeDecodeError:
            text = None
        if text is not None:
            try:
                with transaction.atomic():
                    _lock_job(job_pk)
                    stored = _store_postgresql(job_pk, text, time.time())
                    if stored is not None:
                        return _finish(job_pk, stored)
            except DataError:  # not JSON, or a value PostgreSQL cannot read: nothing was stored
                pass
    return metric_points_ingest(job=TrainingJob(pk=job_pk), points=parse_points(body))
