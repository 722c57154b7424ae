"""The tracking ingest service: the single writer of metric points and the single broadcaster of them.

Every producer — the Celery training worker, the Python SDK, an outside script — sends batches here
(through the HTTP endpoint). A batch is all-or-nothing: one bad point rejects the whole batch with a
message naming it, and nothing is stored. Points are idempotent on (job, key, step): a retried batch
stores nothing twice.
"""

from __future__ import annotations

import math
import re
import time
from dataclasses import dataclass

from django.conf import settings
from django.db import transaction

from experiments.live import broadcast_on_commit
from experiments.models import MetricPoint, MetricRollup, TrainingJob
from t4dm_site.errors import Conflict, InvalidInput, PayloadTooLarge

METRIC_KEY = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_./\-]{0,99}$")


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


def _validate(points: list[PointIn]) -> None:
    if len(points) > settings.INGEST_MAX_BATCH:
        raise PayloadTooLarge(
            f"batch has {len(points)} points; the limit is {settings.INGEST_MAX_BATCH} — split it into smaller batches"
        )
    problems = []
    for index, p in enumerate(points):
        if not METRIC_KEY.match(p.key or ""):
            problems.append(
                {
                    "index": index,
                    "key": p.key,
                    "message": "bad key: use 1-100 characters of letters, digits, _ . / -",
                }
            )
        if not math.isfinite(p.value):
            problems.append(
                {"index": index, "key": p.key, "message": f"value {p.value} is not a finite number"}
            )
        if p.step < 0:
            problems.append({"index": index, "key": p.key, "message": f"step {p.step} is negative"})
        for name in ("wall_time", "epoch"):
            extra = getattr(p, name)
            if extra is not None and not math.isfinite(extra):
                problems.append(
                    {"index": index, "key": p.key, "message": f"{name} {extra} is not a finite number"}
                )
    if problems:
        first = problems[0]
        raise InvalidInput(
            f"{len(problems)} point(s) rejected, nothing stored; first: point {first['index']} "
            f"({first['key']!r}): {first['message']}",
            details=problems[:50],
            code="invalid_points",
        )


def _rollups_fold(*, job_pk: int, points: list[MetricPoint]) -> None:
    """Fold new points into their series' fixed-width rollups (inside the ingest transaction)."""
    if not points:
        return
    width = MetricRollup.ROLLUP_WIDTH
    fresh: dict[tuple[str, int], list] = {}
    for p in points:
        agg = fresh.get((p.key, p.step // width))
        if agg is None:
            fresh[(p.key, p.step // width)] = [p.value, p.value, 1, p.wall_time, p.step]
        else:
            agg[0], agg[1], agg[2] = min(agg[0], p.value), max(agg[1], p.value), agg[2] + 1
            agg[3], agg[4] = min(agg[3], p.wall_time), max(agg[4], p.step)
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


def metric_points_ingest(*, job: TrainingJob, points: list[PointIn]) -> IngestResult:
    _validate(points)
    if not points:
        return IngestResult(created=0, duplicates=0)
    # Within one batch the last value for a (key, step) wins, like a dict.
    unique = {(p.key, p.step): p for p in points}
    now = time.time()
    with transaction.atomic():
        # Locking the job row serialises ingest per job: ids then grow in commit order, which is
        # what lets a reconnecting websocket ask for "everything after id N" without gaps.
        locked = TrainingJob.objects.select_for_update().get(pk=job.pk)
        keys = {key for key, _ in unique}
        steps = {step for _, step in unique}
        existing = set(
            MetricPoint.objects.filter(job_id=job.pk, key__in=keys, step__in=steps).values_list("key", "step")
        )
        new = [
            MetricPoint(
                job_id=job.pk,
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
        _rollups_fold(job_pk=job.pk, points=created)
        if created and created[0].pk is None:  # a backend that cannot return ids from bulk inserts
            raise Conflict("database backend cannot return ids from bulk inserts")
        latest = {}
        for point in sorted(created, key=lambda p: p.step):
            latest[point.key] = point.value
        if latest:
            locked.latest_metrics = {**locked.latest_metrics, **latest}
            locked.save(update_fields=["latest_metrics"])
        if created:
            broadcast_on_commit(
                job.pk, {"type": "job.points", "points": [point_to_message(p) for p in created]}
            )
    return IngestResult(created=len(created), duplicates=len(points) - len(created))
