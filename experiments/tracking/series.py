"""Series reads: a job's metric series for the chart API and the websocket snapshot, exact where the
range holds few points, otherwise the first, last, lowest and highest point of each bucket (M4), each
at the step where it happened, from the rollups the ingest service keeps."""

from __future__ import annotations

import threading
from bisect import bisect_left, bisect_right
from collections import OrderedDict, defaultdict

from django.db import connection, transaction
from django.db.models import Max, Min

from experiments.models import MetricPoint, MetricRollup, TrainingJob
from experiments.tracking.ingest import live_points, rollup_merge


def _downsample(
    points: list[tuple[int, int, float, float]], max_points: int
) -> list[tuple[int, int, float, float]]:
    """M4: the first, last, lowest and highest point of each run of points, each at its own step, so
    the drawn line has the raw series' shape (spikes, dips and where it ends) in ≤ max_points points."""
    if len(points) <= max_points:
        return points
    buckets = max(1, max_points // 4)
    size = -(-len(points) // buckets)
    kept: list[tuple[int, int, float, float]] = []
    for start in range(0, len(points), size):
        chunk = points[start : start + size]
        picks = {chunk[0], min(chunk, key=lambda p: p[2]), max(chunk, key=lambda p: p[2]), chunk[-1]}
        kept.extend(sorted(picks, key=lambda p: p[1]))
    return kept


def metric_series(*, job: TrainingJob, after_id: int = 0, max_points: int = 2000) -> dict:
    """Points of every series of a job with id > after_id, as {key: [[step, value, t], ...]}, and the
    highest id included (the cursor a client resumes from). When more than LONG_SERIES_POINTS points
    are new, each series comes from its summary (see metric_series_range) and may repeat points the
    client already has; a client keyed by step simply overwrites them."""
    fresh = MetricPoint.objects.filter(job=job, id__gt=after_id).order_by("id")
    # Counting through the (job, id) index alone is cheap; reading 20k full rows only to learn that
    # there are more is not.
    if fresh.values_list("id", flat=True)[LONG_SERIES_POINTS : LONG_SERIES_POINTS + 1].exists():
        # The cursor is read before the series: a point stored meanwhile may appear in both the
        # snapshot and the live stream (the client keys by step), but never in neither.
        last_id = MetricPoint.objects.filter(job=job).aggregate(top=Max("id"))["top"] or after_id
        series, downsampled = {}, False
        for key in metric_keys(job=job):
            part = metric_series_range(job=job, key=key, max_points=max_points, after_id=after_id)
            series[key] = part["series"][key]
            downsampled = downsampled or part["downsampled"]
        return {"series": series, "last_id": last_id, "downsampled": downsampled}
    rows = fresh.values_list("id", "key", "step", "value", "wall_time")
    by_key: dict[str, list[tuple[int, int, float, float]]] = defaultdict(list)
    last_id = after_id
    for point_id, key, step, value, wall_time in rows:
        by_key[key].append((point_id, step, value, wall_time))
        last_id = max(last_id, point_id)
    for points in by_key.values():
        points.sort(key=lambda p: p[1])
    series = {
        key: [[step, value, t] for _, step, value, t in _downsample(points, max_points)]
        for key, points in sorted(by_key.items())
    }
    return {
        "series": series,
        "last_id": last_id,
        "downsampled": any(len(p) > max_points for p in by_key.values()),
    }


# --- long series: a fine summary per series, kept current by folding in new points -----------------
#
# Reading a million points to draw 2,000 of them costs ~0.5-1 s on SQLite; one GROUP BY over them still
# costs ~0.4 s. So a long series is summarised once into ~32k fine buckets (from the stored rollups: min
# and max with their steps, count, first wall time, first and last step) and then kept current by
# folding in only the points with a higher id — the same cursor the websocket uses. A chart request
# merges the fine buckets of its range into display buckets, picks each one's first, last, lowest and
# highest point (M4) and reads those few points exactly by step; a range that holds no more points
# than asked for (or few) is read exactly from the table instead.

LONG_SERIES_POINTS = 20_000
FINE_BUCKETS = 32_768
_SUMMARY_CACHE_SIZE = 16
_STEPS_PER_QUERY = 900  # under SQLite's bound-parameter limit


class _SeriesSummary:
    # A bucket is the rollup's fields, in experiments.ingest.rollup_merge's order:
    LO, HI, N, FIRST_T, LAST_STEP, FIRST_STEP, LO_STEP, HI_STEP = range(8)

    def __init__(self, job: TrainingJob, key: str) -> None:
        self.job_pk, self.key = job.pk, key
        self.lock = threading.Lock()
        self.width = 1
        self.buckets: dict[int, list] = {}
        self.up_to_id = 0
        self._sorted: list[int] | None = None
        self._build()

    def _points(self):
        return MetricPoint.objects.filter(job_id=self.job_pk, key=self.key)

    def _build(self) -> None:
        with transaction.atomic():
            # The ingest service holds this row lock while it stores points and their rollups, so
            # the rollups and the id cursor read here are one consistent snapshot.
            list(TrainingJob.objects.select_for_update().filter(pk=self.job_pk).values_list("pk"))
            # The job-wide highest id is a valid cursor for this series too, and the (job, id) index
            # answers it at once; the series' own max id would need a visit to every row.
            self.up_to_id = (
                MetricPoint.objects.filter(job_id=self.job_pk).aggregate(top=Max("id"))["top"] or 0
            )
            high = self._points().aggregate(high=Max("step"))["high"] or 0
            self._build_from_rollups(high)
        self._sorted = None

    def _build_from_rollups(self, high: int) -> None:
        """Merge the stored fixed-width rollups (ROLLUP_WIDTH steps each) into ≤ FINE_BUCKETS buckets."""
        factor = max(1, -(-(high + 1) // (MetricRollup.ROLLUP_WIDTH * FINE_BUCKETS)))
        self.width = MetricRollup.ROLLUP_WIDTH * factor
        self.buckets = {}
        rows = MetricRollup.objects.filter(job_id=self.job_pk, key=self.key).values_list(
            "bucket", "lo", "hi", "n", "first_wall_time", "last_step", "first_step", "lo_step", "hi_step"
        )
        for bucket, *fields in rows:
            into = self.buckets.get(bucket // factor)
            if into is None:
                self.buckets[bucket // factor] = fields
            else:
                rollup_merge(into, fields)

    def refresh(self) -> None:
        """Fold in the points stored since the summary was last brought up to date."""
        fresh = list(
            self._points()
            .filter(id__gt=self.up_to_id)
            .values_list("id", "step", "value", "wall_time")
            .order_by("id")
        )
        for point_id, step, value, wall_time in fresh:
            point = [value, value, 1, wall_time, step, step, step, step]
            bucket = self.buckets.get(step // self.width)
            if bucket is None:
                self.buckets[step // self.width] = point
                self._sorted = None
            else:
                rollup_merge(bucket, point)
            self.up_to_id = max(self.up_to_id, point_id)
        if len(self.buckets) > 4 * FINE_BUCKETS:
            self._coarsen(4)

    def _coarsen(self, factor: int) -> None:
        merged: dict[int, list] = {}
        for index, fields in self.buckets.items():
            into = merged.get(index // factor)
            if into is None:
                merged[index // factor] = list(fields)
            else:
                rollup_merge(into, fields)
        self.width *= factor
        self.buckets, self._sorted = merged, None

    def indexes(self, start: int, end: int) -> list[int]:
        if self._sorted is None:
            self._sorted = sorted(self.buckets)
        lo, hi = bisect_left(self._sorted, start // self.width), bisect_right(self._sorted, end // self.width)
        return self._sorted[lo:hi]

    def count(self, indexes: list[int]) -> int:
        return sum(self.buckets[i][self.N] for i in indexes)

    def downsample(self, indexes: list[int], max_points: int, start: int, end: int) -> list[list[float]]:
        """M4 over display buckets (runs of fine buckets): the steps of each one's first, last, lowest
        and highest point, then those points read exactly, so each sits at the step where it happened."""
        groups = max(1, max_points // 4)
        size = -(-len(indexes) // groups)
        steps: set[int] = set()
        for begin in range(0, len(indexes), size):
            run = [self.buckets[i] for i in indexes[begin : begin + size]]
            low = min(run, key=lambda b: b[self.LO])
            high = max(run, key=lambda b: b[self.HI])
            steps.update(
                (run[0][self.FIRST_STEP], run[-1][self.LAST_STEP], low[self.LO_STEP], high[self.HI_STEP])
            )
        wanted = sorted(s for s in steps if start <= s <= end)
        points: list[list[float]] = []
        for begin in range(0, len(wanted), _STEPS_PER_QUERY):
            chunk = wanted[begin : begin + _STEPS_PER_QUERY]
            rows = self._points().filter(step__in=chunk).values_list("step", "value", "wall_time")
            points.extend([step, value, t] for step, value, t in rows)
        return sorted(points)


_summaries: OrderedDict[tuple, _SeriesSummary] = OrderedDict()
_summaries_lock = threading.Lock()


def _summary(job: TrainingJob, key: str) -> _SeriesSummary:
    # created_at is part of the key so that a reused primary key (tests, a restored database) never
    # meets another job's summary.
    cache_key = (job.pk, job.created_at, key)
    with _summaries_lock:
        summary = _summaries.get(cache_key)
        if summary is not None:
            _summaries.move_to_end(cache_key)
    if summary is None:
        summary = _SeriesSummary(job, key)
        with _summaries_lock:
            _summaries[cache_key] = summary
            while len(_summaries) > _SUMMARY_CACHE_SIZE:
                _summaries.popitem(last=False)
    return summary


def _cached_summary(job: TrainingJob, key: str) -> _SeriesSummary | None:
    with _summaries_lock:
        return _summaries.get((job.pk, job.created_at, key))


def _raw_range(job: TrainingJob, key: str, start: int, end: int, after_id: int, limit: int) -> list:
    return list(
        MetricPoint.objects.filter(job=job, key=key, step__gte=start, step__lte=end, id__gt=after_id)
        .order_by("step")
        .values_list("id", "step", "value", "wall_time")[:limit]
    )


def metric_series_range(
    *,
    job: TrainingJob,
    key: str,
    start: int | None = None,
    end: int | None = None,
    max_points: int = 2000,
    after_id: int = 0,
) -> dict:
    """One series between steps start and end (inclusive), at most ~max_points points: every point
    where the range holds no more than max_points, otherwise the first, last, lowest and highest point
    of each bucket (M4), each at its own step. The chart's zoom asks for its visible range."""
    start = 0 if start is None else max(0, int(start))
    end = 2**62 if end is None else int(end)
    last_id = MetricPoint.objects.filter(job=job).aggregate(top=Max("id"))["top"] or 0
    exact_up_to = max(LONG_SERIES_POINTS, max_points)
    summary = _cached_summary(job, key)
    if summary is None:
        rows = _raw_range(job, key, start, end, after_id, exact_up_to + 1)
        if len(rows) <= exact_up_to:
            points = [[step, value, t] for _, step, value, t in _downsample(rows, max_points)]
            return {"series": {key: points}, "last_id": last_id, "downsampled": len(rows) > max_points}
        summary = _summary(job, key)
    with summary.lock:
        summary.refresh()
        indexes = summary.indexes(start, end)
        held = summary.count(indexes)  # whole fine buckets: at least the points in the range
        if held > exact_up_to:
            points = summary.downsample(indexes, max_points, start, end)
            return {"series": {key: points}, "last_id": last_id, "downsampled": True}
    rows = _raw_range(job, key, start, end, after_id, held + LONG_SERIES_POINTS)
    points = [[step, value, t] for _, step, value, t in _downsample(rows, max_points)]
    return {"series": {key: points}, "last_id": last_id, "downsampled": len(rows) > max_points}


def points_in_range(*, job: TrainingJob, after_id: int, upto_id: int) -> list[dict]:
    """The job's points with ids in (after_id, upto_id], ids ascending, as the live broadcast carries
    them: a viewer's read of a large batch that was broadcast as its id range (tracking/consumers.py)."""
    rows = (
        _points_in(job, after_id, upto_id)
        .order_by("id")
        .values_list("id", "key", "step", "value", "wall_time")
    )
    return live_points(rows)


def points_last_id() -> int:
    """The last metric point id given out (0 before the first): ids only grow, so this counts the points
    ever stored. On PostgreSQL it is the id sequence's value: the points' primary key there is
    (job_id, id) (migration 0015), so max(id) over every job would read the whole table."""
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute(
                "SELECT COALESCE(pg_sequence_last_value(pg_get_serial_sequence(%s, 'id')::regclass), 0)",
                [MetricPoint._meta.db_table],
            )
            return cursor.fetchone()[0]
    return MetricPoint.objects.aggregate(top=Max("id"))["top"] or 0


def points_between(*, job: TrainingJob, after_id: int, upto_id: int) -> int:
    """How many of the job's points have ids in (after_id, upto_id]: a reconnecting viewer's check that
    it got every live point up to `upto_id` (tracking/consumers.py)."""
    return _points_in(job, after_id, upto_id).count()


def _points_in(job: TrainingJob, after_id: int, upto_id: int):
    return MetricPoint.objects.filter(job=job, id__gt=after_id, id__lte=upto_id)


def metric_keys(*, job: TrainingJob) -> list[str]:
    """The job's metric keys, found by skipping through the (job, key, step) index one key at a time
    rather than reading every point."""
    keys: list[str] = []
    points = MetricPoint.objects.filter(job=job)
    key = points.aggregate(k=Min("key"))["k"]
    while key is not None:
        keys.append(key)
        key = points.filter(key__gt=key).aggregate(k=Min("key"))["k"]
    return keys
