"""The tracking ingest service: the single writer of metric points and the single broadcaster of them.

Every producer — the Celery training worker, the Python SDK, an outside script — sends batches here
(through the HTTP endpoint). A batch is all-or-nothing: one bad point rejects the whole batch with a
message naming it, and nothing is stored. Points are idempotent on (job, key, step): a retried batch
stores nothing twice.

On PostgreSQL a batch is one statement: the points go in as arrays (`unnest`) with
`ON CONFLICT DO NOTHING`, and the same statement folds the rows it inserted into the series' rollups
(a data-modifying CTE) and returns them for the broadcast. Other databases (the embedded SQLite)
take the ORM path, with the same guarantees.
"""

from __future__ import annotations

import math
import re
import time
from dataclasses import dataclass

from django.conf import settings
from django.db import connection, transaction

from experiments.live import broadcast_on_commit
from experiments.models import MetricPoint, MetricRollup, TrainingJob
from t4dm_site.errors import Conflict, InvalidInput, PayloadTooLarge

METRIC_KEY = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_./\-]{0,99}$")
MAX_STEP = 2**63 - 1  # a PostgreSQL bigint

# (id, key, step, value, wall_time) of a stored point.
Row = tuple[int, str, int, float, float]


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


def point_to_message(point: MetricPoint) -> dict:
    return {"id": point.id, "key": point.key, "step": point.step, "value": point.value, "t": point.wall_time}


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
        key for key in {p.key for p in points} if not (isinstance(key, str) and METRIC_KEY.match(key))
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
_INSERT_POSTGRESQL = f"""
WITH incoming AS (
    SELECT * FROM unnest(%s::text[], %s::bigint[], %s::float8[], %s::float8[], %s::float8[])
        AS t(key, step, value, wall_time, epoch)
), inserted AS (
    INSERT INTO {_POINTS} (job_id, key, step, value, wall_time, epoch)
    SELECT %s, key, step, value, wall_time, epoch FROM incoming ORDER BY key, step
    ON CONFLICT (job_id, key, step) DO NOTHING
    RETURNING id, key, step, value, wall_time
), folded AS (
    INSERT INTO {_ROLLUPS} AS r (job_id, key, bucket, lo, hi, n, first_wall_time, last_step)
    SELECT %s, key, step / {MetricRollup.ROLLUP_WIDTH}, min(value), max(value), count(*),
           min(wall_time), max(step)
    FROM inserted GROUP BY key, step / {MetricRollup.ROLLUP_WIDTH}
    ON CONFLICT (job_id, key, bucket) DO UPDATE SET
        lo = LEAST(r.lo, EXCLUDED.lo),
        hi = GREATEST(r.hi, EXCLUDED.hi),
        n = r.n + EXCLUDED.n,
        first_wall_time = LEAST(r.first_wall_time, EXCLUDED.first_wall_time),
        last_step = GREATEST(r.last_step, EXCLUDED.last_step)
)
SELECT id, key, step, value, wall_time FROM inserted
"""


def _array(items) -> str:
    """A PostgreSQL array literal. Numbers print in Python's round-trip form; keys are quoted (METRIC_KEY
    admits no quote, backslash or space, so none needs escaping, and a key "null" stays a string)."""
    return "{" + ",".join(items) + "}"


def _store_postgresql(job_pk: int, unique: dict[tuple[str, int], PointIn], now: float) -> list[Row]:
    points = unique.values()
    # Five array literals built by str.join run ~10x faster than psycopg's element-by-element array
    # adaptation of the same lists; the server parses them back into typed arrays.
    params = (
        _array(['"' + p.key + '"' for p in points]),
        _array([str(int(p.step)) for p in points]),
        _array([repr(float(p.value)) for p in points]),
        _array([repr(now if p.wall_time is None else float(p.wall_time)) for p in points]),
        _array(["NULL" if p.epoch is None else repr(float(p.epoch)) for p in points]),
        job_pk,
        job_pk,
    )
    with connection.cursor() as cursor:
        cursor.execute(_INSERT_POSTGRESQL, params)
        rows = cursor.fetchall()
    rows.sort()  # RETURNING order is not guaranteed; the broadcast goes in id order
    return rows


# --- any other database (the embedded SQLite): the ORM -----------------------------------------------


def _rollups_fold(*, job_pk: int, rows: list[Row]) -> None:
    """Fold new points into their series' fixed-width rollups (inside the ingest transaction)."""
    if not rows:
        return
    width = MetricRollup.ROLLUP_WIDTH
    fresh: dict[tuple[str, int], list] = {}
    for _, key, step, value, wall_time in rows:
        agg = fresh.get((key, step // width))
        if agg is None:
            fresh[(key, step // width)] = [value, value, 1, wall_time, step]
        else:
            agg[0], agg[1], agg[2] = min(agg[0], value), max(agg[1], value), agg[2] + 1
            agg[3], agg[4] = min(agg[3], wall_time), max(agg[4], step)
    existing = {
        (r.key, r.bucket): r
        for r in MetricRollup.objects.filter(
            job_id=job_pk, key__in={k for k, _ in fresh}, bucket__in={b for _, b in fresh}
        )
    }
    changed, new = [], []
    for (key, bucket), (lo, hi, n, t, last) in fresh.items():
        row = existing.get((key, bucket))
        if row is None:
            new.append(
                MetricRollup(
                    job_id=job_pk,
                    key=key,
                    bucket=bucket,
                    lo=lo,
                    hi=hi,
                    n=n,
                    first_wall_time=t,
                    last_step=last,
                )
            )
        else:
            row.lo, row.hi, row.n = min(row.lo, lo), max(row.hi, hi), row.n + n
            row.first_wall_time, row.last_step = min(row.first_wall_time, t), max(row.last_step, last)
            changed.append(row)
    MetricRollup.objects.bulk_create(new)
    MetricRollup.objects.bulk_update(changed, ["lo", "hi", "n", "first_wall_time", "last_step"])


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


def metric_points_ingest(*, job: TrainingJob, points: list[PointIn]) -> IngestResult:
    _validate(points)
    if not points:
        return IngestResult(created=0, duplicates=0)
    # Within one batch the last value for a (key, step) wins, like a dict.
    unique = {(p.key, p.step): p for p in points}
    now = time.time()
    with transaction.atomic():
        # Locking the job row serialises ingest per job: ids then grow in commit order, which is
        # what lets a reconnecting websocket ask for "everything after id N" without missing any.
        # (Ids of one job are increasing, not consecutive: a conflicting row may use up an id.)
        locked = TrainingJob.objects.select_for_update().only("pk", "latest_metrics").get(pk=job.pk)
        if connection.vendor == "postgresql":
            rows = _store_postgresql(job.pk, unique, now)
        else:
            rows = _store_orm(job.pk, unique, now)
        if rows:
            latest: dict[str, tuple[int, float]] = {}
            for _, key, step, value, _ in rows:
                seen = latest.get(key)
                if seen is None or step >= seen[0]:
                    latest[key] = (step, value)
            locked.latest_metrics = {**locked.latest_metrics, **{k: v for k, (_, v) in latest.items()}}
            locked.save(update_fields=["latest_metrics"])
            broadcast_on_commit(
                job.pk,
                {
                    "type": "job.points",
                    "points": [
                        {"id": i, "key": key, "step": step, "value": value, "t": wall_time}
                        for i, key, step, value, wall_time in rows
                    ],
                },
            )
    return IngestResult(created=len(rows), duplicates=len(points) - len(rows))
