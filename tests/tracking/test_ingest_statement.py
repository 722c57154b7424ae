"""The ingest statement's storing rules, on every database (tests/experiments/test_ingest_postgresql.py
reruns this module on PostgreSQL, where one SQL statement does what the ORM path does on SQLite): the
rollups' extremes and their steps (the earliest on a tie, an extreme moved only by a strictly lower or
higher value), latest values, repeats across and within batches, exact float text in the broadcast, and
a batch that waited for the job row's lock behind another batch of the same job."""

from __future__ import annotations

import json
import threading
import time

import pytest
from django.db import connection

from experiments.ingest import PointIn, metric_points_ingest, metric_points_ingest_body
from experiments.models import MetricPoint, MetricRollup, TrainingJob
from experiments.tracking import ingest

pytestmark = pytest.mark.django_db


@pytest.fixture
def job(demo_config):
    return TrainingJob.objects.create(
        owner=demo_config.owner, config=demo_config, experiment=demo_config.experiment
    )


def _batch_rollups(points: list[PointIn], width: int) -> dict:
    """One batch's rollups by the rule: per (key, bucket) lo/hi and the earliest step holding each."""
    out: dict[tuple[str, int], list] = {}
    for p in sorted(points, key=lambda p: p.step):
        agg = out.setdefault(
            (p.key, p.step // width), [p.value, p.value, 0, p.wall_time, p.step, p.step, p.step, p.step]
        )
        if p.value < agg[0]:
            agg[0], agg[6] = p.value, p.step
        if p.value > agg[1]:
            agg[1], agg[7] = p.value, p.step
        agg[2] += 1
        agg[3], agg[4], agg[5] = min(agg[3], p.wall_time), max(agg[4], p.step), min(agg[5], p.step)
    return out


def _expected_rollups(batches: list[list[PointIn]], width: int) -> dict:
    """What the rollups must hold after these batches (each point's first copy wins; inside a batch the
    last value sent for a step is the one stored)."""
    stored: set[tuple[str, int]] = set()
    rollups: dict[tuple[str, int], list] = {}
    for batch in batches:
        fresh = {(p.key, p.step): p for p in batch if (p.key, p.step) not in stored}
        stored |= set(fresh)
        for key, agg in _batch_rollups(list(fresh.values()), width).items():
            rollups[key] = ingest.rollup_merge(rollups[key], agg) if key in rollups else agg
    return rollups


def _stored_rollups(job) -> dict:
    return {
        (r.key, r.bucket): [
            r.lo,
            r.hi,
            r.n,
            r.first_wall_time,
            r.last_step,
            r.first_step,
            r.lo_step,
            r.hi_step,
        ]
        for r in MetricRollup.objects.filter(job=job)
    }


def test_extremes_keep_the_earliest_step_on_a_tie_and_move_only_to_a_strictly_new_extreme(job):
    width = MetricRollup.ROLLUP_WIDTH
    big = 2**62 + 5  # steps above 2**53: a float8 cannot tell 2**62 + 5 from 2**62 + 6
    batches = [
        # Ties inside a batch, sent out of step order: the earliest step holds the extreme.
        [
            PointIn("loss", s, v, wall_time=100.0 + s)
            for s, v in [(9, 1.0), (3, 0.5), (7, 0.5), (5, 2.0), (1, 2.0)]
        ],
        # A later batch that only ties the extremes, at earlier steps, moves nothing.
        [PointIn("loss", s, v, wall_time=50.0 + s) for s, v in [(0, 0.5), (2, 2.0), (4, 1.0)]],
        # A strictly lower value moves the low end to its own step; repeats of stored steps count nothing.
        [PointIn("loss", s, v, wall_time=10.0) for s, v in [(8, -3.0), (9, -99.0), (3, 99.0)]],
        [PointIn("acc", big + d, v, wall_time=1.0) for d, v in [(3, 0.25), (1, 0.75), (2, 0.25), (0, 0.75)]],
        [PointIn("acc", 2**63 - 1, -1.0, wall_time=2.0), PointIn("acc", big + width, -1.0, wall_time=2.0)],
    ]
    for batch in batches:
        metric_points_ingest(job=job, points=batch)
    assert _stored_rollups(job) == _expected_rollups(batches, width)
    rollup = MetricRollup.objects.get(job=job, key="acc", bucket=big // width)
    assert (rollup.lo_step, rollup.hi_step) == (big + 2, big)


def test_the_rollups_follow_random_batches_with_repeats_and_ties(job):
    import random

    width = MetricRollup.ROLLUP_WIDTH
    rng = random.Random(7)
    batches = []
    for _ in range(12):
        # Values from a small set (many ties), steps around a moving front (repeats and late points).
        front = rng.randrange(0, 4 * width)
        batches.append(
            [
                PointIn(
                    rng.choice(["a", "b/c"]),
                    max(0, front + rng.randrange(-width, width)),
                    float(rng.randrange(-3, 4)),
                    wall_time=float(rng.randrange(1000)),
                )  # fmt: skip
                for _ in range(rng.randrange(1, 300))
            ]
        )
    for batch in batches:
        metric_points_ingest(job=job, points=batch)
    assert _stored_rollups(job) == _expected_rollups(batches, width)
    stored = {(p.key, p.step): p.value for p in MetricPoint.objects.filter(job=job)}
    first: dict[tuple[str, int], float] = {}
    for batch in batches:
        fresh = {(p.key, p.step): p.value for p in batch if (p.key, p.step) not in first}
        first.update(fresh)
    assert stored == first


def test_repeats_below_and_new_points_above_the_stored_front_of_each_key(job):
    metric_points_ingest(job=job, points=[PointIn("loss", s, 1.0) for s in range(100, 200)])
    metric_points_ingest(job=job, points=[PointIn("eval", s, 1.0) for s in range(0, 300, 50)])
    # "loss" stored 100..199 and "eval" 0..250: repeats of both and new points on both sides.
    batch = [PointIn("loss", s, 2.0) for s in range(0, 260)] + [
        PointIn("eval", s, 2.0) for s in range(0, 400, 25)
    ]
    result = metric_points_ingest(job=job, points=batch)
    assert (result.created, result.duplicates) == (160 + 10, 100 + 6)
    values = {(p.key, p.step): p.value for p in MetricPoint.objects.filter(job=job)}
    assert values[("loss", 150)] == 1.0 and values[("loss", 99)] == 2.0 and values[("loss", 259)] == 2.0
    assert values[("eval", 50)] == 1.0 and values[("eval", 75)] == 2.0 and values[("eval", 375)] == 2.0
    assert len(values) == 260 + 16


def test_latest_follows_the_highest_step_this_batch_stored(job):
    metric_points_ingest(job=job, points=[PointIn("loss", 10, 1.0), PointIn("acc", 4, 0.5)])
    # Step 10 is a repeat (dropped); step 3 is new: latest is the value of the highest point stored now.
    metric_points_ingest(
        job=job, points=[PointIn("loss", 10, 5.0), PointIn("loss", 3, 7.0), PointIn("loss", 2, 8.0)]
    )
    job.refresh_from_db()
    assert job.latest_metrics == {"loss": 7.0, "acc": 0.5}


def test_the_broadcast_text_carries_each_float_exactly(job, monkeypatch):
    sent = []
    monkeypatch.setattr(ingest, "broadcast_on_commit", lambda pk, message: sent.append(message))
    values = [0.1, 1 / 3, -2.5e-300, 5e-324, 1.7976931348623157e308, 123456789.123456789, -0.0, 2.0**60]
    points = [PointIn("a.b/c-d_e", s, v, wall_time=1_700_000_000.123456 + s) for s, v in enumerate(values)]
    metric_points_ingest(job=job, points=points)
    broadcast = json.loads(sent[0]["points_json"])
    assert [p["value"] for p in broadcast] == values
    assert [p["t"] for p in broadcast] == [p.wall_time for p in points]
    assert [(p["key"], p["step"]) for p in broadcast] == [("a.b/c-d_e", s) for s in range(len(values))]
    ids = [p["id"] for p in broadcast]
    assert ids == sorted(ids) == sorted(MetricPoint.objects.filter(job=job).values_list("id", flat=True))


def test_a_key_sent_with_json_escapes_is_stored_as_its_text(job):
    body = (
        b'{"points": [{"key": "lo\\u0073s", "step": 1, "value": 1.0}, {"key": "5", "step": 1, "value": 2.0}]}'
    )
    assert metric_points_ingest_body(job_pk=job.pk, body=body).created == 2
    assert sorted(MetricPoint.objects.filter(job=job).values_list("key", flat=True)) == ["5", "loss"]


@pytest.mark.django_db(transaction=True)
def test_a_batch_that_waited_for_another_of_its_job_stores_each_point_once_in_commit_order(demo_config):
    """Two batches of one job overlap; the second is sent (with the job token, as the worker's lean path
    sends it) while the first holds the job row's lock. Whatever the second statement does — store the
    new points or refuse so that the caller goes the usual way — it raises nothing and stores nothing
    twice, and its points get ids after the first batch's."""
    if connection.vendor != "postgresql":
        pytest.skip("PostgreSQL only: tests/experiments/test_ingest_postgresql.py runs it")
    import psycopg

    from t4dm_site.models import hash_token

    job = TrainingJob.objects.create(
        owner=demo_config.owner, config=demo_config, experiment=demo_config.experiment
    )
    token = job.issue_token()
    params = connection.get_connection_params()
    params = {k: v for k, v in params.items() if k not in ("cursor_factory", "context")}
    first = json.dumps({"points": [{"key": "loss", "step": s, "value": 1.0} for s in range(0, 10)]})
    second = json.dumps({"points": [{"key": "loss", "step": s, "value": 2.0} for s in range(5, 15)]})
    outcome: dict = {}

    def send_second() -> None:
        try:
            with psycopg.connect(**params, autocommit=True) as b:
                sql_params = ingest.statement_params(
                    job.pk, second, time.time(), token_hash=hash_token(token)
                )
                outcome["row"] = b.execute(ingest.INSERT_POSTGRESQL_JOB_TOKEN, sql_params).fetchone()
        except Exception as exc:  # noqa: BLE001 - the assertion below names it
            outcome["error"] = exc

    # The lock waits are watched from a third connection: a transaction sees pg_stat_activity as of its
    # first look.
    with psycopg.connect(**params) as a, psycopg.connect(**params, autocommit=True) as watch:
        with a.transaction():
            assert (
                a.execute(
                    ingest._INSERT_POSTGRESQL, ingest.statement_params(job.pk, first, time.time())
                ).fetchone()[2]
                == 10
            )
            waiter = threading.Thread(target=send_second)
            waiter.start()
            for _ in range(500):  # until the second statement waits for the lock
                waiting = watch.execute(
                    "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' AND datname = current_database()"
                ).fetchone()[0]
                if waiting:
                    break
                time.sleep(0.02)
            assert waiting, f"the second batch did not wait for the job row's lock: {outcome}"
        waiter.join(30)
    assert "error" not in outcome, outcome.get("error")
    stored = ingest.stored_from_row(outcome["row"])
    if stored is None:  # refused: the caller goes the usual way (the endpoint), which stores it
        result = metric_points_ingest_body(job_pk=job.pk, body=second.encode())
    else:
        result = ingest.ingest_result(stored)
    assert (result.created, result.duplicates) == (5, 5)
    rows = list(MetricPoint.objects.filter(job=job).order_by("id").values_list("step", "value"))
    assert rows == [(s, 1.0) for s in range(10)] + [(s, 2.0) for s in range(10, 15)]
    rollup = MetricRollup.objects.get(job=job, key="loss", bucket=0)
    assert (rollup.n, rollup.lo, rollup.hi, rollup.last_step) == (15, 1.0, 2.0, 14)


def test_a_batch_reads_the_points_table_only_through_its_unique_index(job):
    """The repeats filter probes the (job, key, step) index: per key for the stored front, per point
    below it. Joined to all of the job's points instead, every batch would cost as much as the job is
    long (a plan choice that no answer shows, so the plan is what is checked)."""
    if connection.vendor != "postgresql":
        pytest.skip("PostgreSQL only: tests/experiments/test_ingest_postgresql.py runs it")
    for begin in range(0, 20_000, 5_000):
        metric_points_ingest(
            job=job, points=[PointIn(k, s, 1.0) for s in range(begin, begin + 2_500) for k in "ab"]
        )
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE " + ingest._POINTS)
    fresh = [PointIn(k, s, 2.0) for s in range(20_000, 20_050) for k in "ab"]
    for points in (fresh, fresh[:10] + [PointIn("a", 3_000, 3.0)]):  # new points; then repeats, one late
        with connection.cursor() as cursor:
            cursor.execute(
                "EXPLAIN (ANALYZE, COSTS OFF) " + ingest._INSERT_POSTGRESQL,
                ingest.statement_params(job.pk, ingest._points_json(points), time.time()),
            )
            plan = "\n".join(row[0] for row in cursor.fetchall())
        scans = [
            line.strip()
            for line in plan.splitlines()
            if f" on {ingest._POINTS}" in line and "Insert" not in line
        ]
        index = f"using {_unique_index()} on"
        assert scans and all("Index Only Scan" in scan and index in scan for scan in scans), plan
    assert MetricPoint.objects.filter(job=job).count() == 20_000 + 100 + 1


def _unique_index() -> str:
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT indexname FROM pg_indexes WHERE tablename = %s AND indexdef LIKE %s",
            [ingest._POINTS, "%UNIQUE%(job_id, key, step)%"],
        )
        return cursor.fetchone()[0]


def test_the_points_table_costs_each_point_two_index_entries_and_reads_by_job_and_id_stay_indexed(job):
    """On PostgreSQL the (job_id, id) index is the points' primary key (migration 0015): each stored
    point adds to two indexes, not three, and the reads by job and id (a viewer's cursor, the points
    counter) still go through an index."""
    from experiments.tracking.series import metric_series, points_between, points_last_id

    if connection.vendor != "postgresql":
        pytest.skip("PostgreSQL only: tests/experiments/test_ingest_postgresql.py runs it")
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT indexdef FROM pg_indexes WHERE tablename = %s ORDER BY indexname", [ingest._POINTS]
        )
        indexes = [row[0].split(" USING ")[1] for row in cursor.fetchall()]
    assert indexes == ["btree (job_id, id)", "btree (job_id, key, step)"], indexes
    before = points_last_id()
    for begin in (0, 1_500):
        metric_points_ingest(
            job=job, points=[PointIn(k, s, 1.0) for s in range(begin, begin + 1_500) for k in "ab"]
        )
    ids = list(MetricPoint.objects.filter(job=job).order_by("id").values_list("id", flat=True))
    first, last = ids[0], ids[-1]
    assert points_last_id() == last >= before + 6_000
    assert points_between(job=job, after_id=first, upto_id=last) == 6_000 - 1
    assert sum(len(v) for v in metric_series(job=job, after_id=ids[-11])["series"].values()) == 10
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE " + ingest._POINTS)
    plan = MetricPoint.objects.filter(job=job, id__gt=ids[-11]).order_by("id").values_list("id").explain()
    assert "using metric_point_job_id" in plan, plan
