"""Read-side queries and the seed-shaped representations of jobs and configs."""

from __future__ import annotations

import threading
from bisect import bisect_left, bisect_right
from collections import OrderedDict, defaultdict

from django.db import transaction
from django.db.models import Max, Min, Q, QuerySet

from experiments.ingest import rollup_merge
from experiments.models import Experiment, MetricPoint, MetricRollup, TrainingConfig, TrainingJob, Worker
from t4dm_site.access import get_visible, visible
from t4dm_site.errors import InvalidInput
from t4dm_site.roles import is_admin


def _configs() -> QuerySet[TrainingConfig]:
    return TrainingConfig.objects.select_related("dataset_version__dataset", "experiment")


def _jobs() -> QuerySet[TrainingJob]:
    return TrainingJob.objects.select_related("config", "experiment")


def experiments_visible_to(user) -> QuerySet[Experiment]:
    return visible(Experiment.objects.all(), user)


def configs_visible_to(user) -> QuerySet[TrainingConfig]:
    return visible(_configs(), user)


def jobs_visible_to(user) -> QuerySet[TrainingJob]:
    return visible(_jobs(), user)


def experiment_get(*, user, experiment_id: str) -> Experiment:
    return get_visible(Experiment.objects.all(), user, experiment_id, "experiment", prefix="exp")


def config_get(*, user, config_id: str) -> TrainingConfig:
    return get_visible(_configs(), user, config_id, "config", prefix="cfg")


def job_get(*, user, job_id: str) -> TrainingJob:
    return get_visible(_jobs(), user, job_id, "job", prefix="job")


def job_to_dict(job: TrainingJob) -> dict:
    """The seed's start_training / monitor_training shape, plus a few fields a UI needs."""
    metrics = job.latest_metrics or {}
    return {
        "job_id": job.public_id,
        "status": job.status,
        "started_at": job.started_at.isoformat() if job.started_at else None,
        "progress": {"epoch": job.epoch, "step": job.step, "total_steps": job.total_steps},
        "metrics": {"loss": metrics.get("loss"), "learning_rate": metrics.get("learning_rate")},
        "config_id": job.config.public_id,
        "experiment_id": job.experiment.public_id,
        "finished_at": job.finished_at.isoformat() if job.finished_at else None,
        "error": job.error or None,
        "cancel_requested": job.cancel_requested,
    }


def config_to_dict(config: TrainingConfig) -> dict:
    """The seed's TrainingConfig shape."""
    estimate = config.estimate or {}
    return {
        "config_id": config.public_id,
        "model_base": config.model_base,
        "approach": config.approach,
        "hyperparameters": config.hyperparameters,
        "estimated_time": estimate.get("training_time", "unknown"),
        "estimated_cost": estimate.get("estimated_cost", "unknown"),
        "dataset_id": config.dataset_version.dataset.public_id,
        "experiment_id": config.experiment.public_id,
        "estimate": estimate,
        "early_stopping": config.early_stopping,
        "checkpointing": config.checkpointing,
    }


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


def workers_overview(*, user) -> list[dict]:
    """Every known worker, busy ones first: what it runs, its GPU, and how long since it reported.
    Which job a worker runs is shown to admins and to that job's owner only; anyone else sees the
    worker as busy, with no job id (another researcher's job ids are not theirs to learn)."""
    from django.utils import timezone

    now = timezone.now()
    workers = Worker.objects.select_related("current_job").order_by("status", "name")
    admin = is_admin(user)

    def current_job_id(worker) -> str | None:
        job = worker.current_job
        if job is None or not (admin or job.owner_id == user.pk):
            return None
        return job.public_id

    return [
        {
            "name": w.name,
            "queue": w.queue,
            "hostname": w.hostname,
            "status": w.status,
            "gpu_name": w.gpu_name,
            "gpu_count": w.gpu_count,
            "gpu_memory_total_mb": w.gpu_memory_total_mb,
            "gpu_memory_free_mb": w.gpu_memory_free_mb,
            "current_job_id": current_job_id(w),
            "last_heartbeat_at": w.last_heartbeat_at.isoformat(),
            "seconds_since_heartbeat": round((now - w.last_heartbeat_at).total_seconds(), 1),
            "started_at": w.started_at.isoformat(),
        }
        for w in workers
    ]


# --- dashboard: runs list, comparison --------------------------------------------------------------

RUN_FILTERS = ("status", "dataset", "model_base", "approach", "tag")


def job_runs(
    *,
    user,
    q: str = "",
    status: str = "",
    dataset: str = "",
    model_base: str = "",
    approach: str = "",
    tag: str = "",
) -> QuerySet[TrainingJob]:
    """Jobs (runs) for the experiments list: free-text search over ids, names, model and notes,
    and exact filters."""
    jobs = jobs_visible_to(user).select_related("config__dataset_version__dataset")
    if q:
        q = q.strip()
        text = (
            Q(experiment__name__icontains=q)
            | Q(experiment__notes__icontains=q)
            | Q(config__model_base__icontains=q)
            | Q(config__dataset_version__dataset__name__icontains=q)
        )
        for prefix, field in (("job", "pk"), ("exp", "experiment_id"), ("cfg", "config_id")):
            if q.lower().startswith(prefix + "-") and q[len(prefix) + 1 :].isdigit():
                text |= Q(**{field: int(q[len(prefix) + 1 :])})
        jobs = jobs.filter(text)
    if status:
        jobs = jobs.filter(status=status)
    if dataset:
        if dataset.startswith("ds-") and dataset[3:].isdigit():
            jobs = jobs.filter(config__dataset_version__dataset_id=int(dataset[3:]))
        else:
            jobs = jobs.filter(config__dataset_version__dataset__name=dataset)
    if model_base:
        jobs = jobs.filter(config__model_base=model_base)
    if approach:
        jobs = jobs.filter(config__approach=approach)
    if tag:
        # Tags are a JSON list; matching in Python keeps this portable across SQLite and PostgreSQL.
        ids = [e.pk for e in experiments_visible_to(user).only("pk", "tags") if tag in (e.tags or [])]
        jobs = jobs.filter(experiment_id__in=ids)
    return jobs


def job_runs_choices(*, user) -> dict[str, list[str]]:
    """Values the list's filter menus offer: those that occur in the user's runs."""
    configs = configs_visible_to(user)
    tags = sorted({t for e in experiments_visible_to(user).only("tags") for t in (e.tags or [])})
    return {
        "model_base": sorted(set(configs.values_list("model_base", flat=True))),
        "approach": sorted(set(configs.values_list("approach", flat=True))),
        "dataset": sorted(
            {c.dataset_version.dataset.public_id for c in configs.select_related("dataset_version__dataset")}
        ),
        "tag": tags,
    }


def job_metric_summaries(*, jobs: list[TrainingJob], keys: list[str]) -> dict[int, dict[str, dict]]:
    """{job pk: {key: {"final": value at the highest step, "min": lowest value}}} for the given keys."""
    out: dict[int, dict[str, dict]] = {job.pk: {} for job in jobs}
    if not jobs or not keys:
        return out
    rows = (
        MetricPoint.objects.filter(job__in=jobs, key__in=keys)
        .values("job_id", "key")
        .annotate(low=Min("value"), last_step=Max("step"))
    )
    last_steps = {}
    for row in rows:
        out[row["job_id"]][row["key"]] = {"min": row["low"], "final": None}
        last_steps[(row["job_id"], row["key"])] = row["last_step"]
    finals = Q()
    for (job_pk, key), step in last_steps.items():
        finals |= Q(job_id=job_pk, key=key, step=step)
    if last_steps:
        for job_pk, key, value in MetricPoint.objects.filter(finals).values_list("job_id", "key", "value"):
            out[job_pk][key]["final"] = value
    return out


def _flatten(prefix: str, value, into: dict) -> None:
    if isinstance(value, dict):
        for k, v in value.items():
            _flatten(f"{prefix}.{k}" if prefix else k, v, into)
    else:
        into[prefix] = value


def job_parameters(job: TrainingJob) -> dict[str, object]:
    """A run's parameters as one flat, ordered mapping (what the compare table shows)."""
    config = job.config
    params: dict[str, object] = {
        "model_base": config.model_base,
        "approach": config.approach,
        "task_type": config.task_type,
        "template": config.template or "—",
        "dataset": f"{config.dataset_version.dataset.public_id} v{config.dataset_version.number}",
        "experiment": job.experiment.name,
    }
    _flatten("", config.hyperparameters or {}, params)
    _flatten("early_stopping", config.early_stopping or {"enabled": False}, params)
    _flatten("checkpointing", config.checkpointing or {}, params)
    return params


COMPARE_MIN, COMPARE_MAX = 2, 10


def runs_compare(*, user, job_ids: list[str]) -> dict:
    """Two to ten runs side by side: a parameter table marking what differs, and final/min metric
    values with their deltas to the first run (the baseline)."""
    job_ids = list(dict.fromkeys(j.strip() for j in job_ids if j.strip()))
    if not COMPARE_MIN <= len(job_ids) <= COMPARE_MAX:
        raise InvalidInput(f"pick {COMPARE_MIN} to {COMPARE_MAX} runs to compare; got {len(job_ids)}")
    jobs = [job_get(user=user, job_id=j) for j in job_ids]
    params = [job_parameters(j) for j in jobs]
    names = list(dict.fromkeys(name for p in params for name in p))
    parameters = []
    for name in names:
        values = [p.get(name, "—") for p in params]
        parameters.append({"name": name, "values": values, "differs": len({repr(v) for v in values}) > 1})
    keys = sorted({k for j in jobs for k in (j.latest_metrics or {})} - {"eta_seconds", "epoch"})
    summaries = job_metric_summaries(jobs=jobs, keys=keys)
    metrics = []
    for key in keys:
        row = {"key": key, "runs": []}
        base = summaries[jobs[0].pk].get(key, {})
        for job in jobs:
            s = summaries[job.pk].get(key, {})
            entry = {"final": s.get("final"), "min": s.get("min")}
            for stat in ("final", "min"):
                ok = entry[stat] is not None and base.get(stat) is not None
                entry[f"{stat}_delta"] = entry[stat] - base[stat] if ok else None
            row["runs"].append(entry)
        metrics.append(row)
    return {
        "runs": [job_to_dict(j) for j in jobs],
        "parameters": parameters,
        "metrics": metrics,
        "differing": [p["name"] for p in parameters if p["differs"]],
    }
