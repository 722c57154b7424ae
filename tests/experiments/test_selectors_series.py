"""Long series: the chart's first load and its zoom read a summary, not every point."""

from __future__ import annotations

import pytest

from experiments.ingest import PointIn, metric_points_ingest
from experiments.models import MetricPoint, MetricRollup, TrainingJob
from experiments.tracking import series

pytestmark = pytest.mark.django_db


@pytest.fixture
def job(demo_config):
    return TrainingJob.objects.create(
        owner=demo_config.owner, config=demo_config, experiment=demo_config.experiment
    )


def _bulk(job, key: str, steps, value=lambda s: 1.0):
    # Through the ingest service, which also keeps the series' rollups.
    points = [PointIn(key, s, value(s), wall_time=1_700_000_000 + s) for s in steps]
    for begin in range(0, len(points), 5000):
        metric_points_ingest(job=job, points=points[begin : begin + 5000])


@pytest.fixture
def small_long_series(settings, monkeypatch):
    # The same code paths at a size a unit test can afford.
    monkeypatch.setattr(series, "LONG_SERIES_POINTS", 500)
    monkeypatch.setattr(series, "FINE_BUCKETS", 256)
    monkeypatch.setattr(MetricRollup, "ROLLUP_WIDTH", 16)  # the ingest service's rollups, scaled down too


def test_a_short_range_is_exact(job):
    _bulk(job, "loss", range(100), value=lambda s: s / 10)
    result = series.metric_series_range(job=job, key="loss", start=10, end=19)
    assert [p[0] for p in result["series"]["loss"]] == list(range(10, 20))
    assert result["series"]["loss"][0][1] == 1.0 and result["downsampled"] is False


def test_a_long_series_keeps_its_spike_and_end_and_stays_under_max_points(job, small_long_series):
    _bulk(job, "loss", range(10_000), value=lambda s: 99.0 if s == 4321 else 1.0)
    result = series.metric_series_range(job=job, key="loss", max_points=200)
    points = result["series"]["loss"]
    assert result["downsampled"] is True and len(points) <= 200
    assert 99.0 in [v for _, v, _ in points]
    assert points[-1][0] == 9999  # the curve ends where the series ends
    assert len({p[0] for p in points}) == len(points)  # one value per step: a client keys by step


def test_zooming_in_returns_the_visible_range_at_higher_resolution(job, small_long_series):
    _bulk(job, "loss", range(10_000), value=lambda s: float(s % 7))
    overview = series.metric_series_range(job=job, key="loss", max_points=200)["series"]["loss"]
    zoomed = series.metric_series_range(job=job, key="loss", start=5000, end=5300, max_points=200)
    points = zoomed["series"]["loss"]
    assert all(5000 <= p[0] <= 5300 for p in points)
    assert len([p for p in overview if 5000 <= p[0] <= 5300]) < 10 < len(points)
    narrow = series.metric_series_range(job=job, key="loss", start=5000, end=5099)["series"]["loss"]
    assert [p[0] for p in narrow] == list(range(5000, 5100))  # few points in range: exact


def test_the_summary_folds_in_points_that_arrive_later(job, small_long_series):
    _bulk(job, "loss", range(2_000))
    series.metric_series_range(job=job, key="loss", max_points=100)  # builds the summary
    metric_points_ingest(job=job, points=[PointIn("loss", 2_500, 42.0)])
    points = series.metric_series_range(job=job, key="loss", max_points=100)["series"]["loss"]
    assert points[-1][:2] == [2_500, 42.0]


def test_the_snapshot_of_a_long_job_reads_every_series_through_its_summary(job, small_long_series):
    _bulk(job, "loss", range(3_000), value=lambda s: 50.0 if s == 1234 else 1.0)
    _bulk(job, "learning_rate", range(0, 3_000, 100), value=lambda s: 0.001)
    snapshot = series.metric_series(job=job, max_points=120)
    assert snapshot["downsampled"] is True
    assert len(snapshot["series"]["loss"]) <= 120 and 50.0 in [v for _, v, _ in snapshot["series"]["loss"]]
    assert len(snapshot["series"]["learning_rate"]) == 30
    assert snapshot["last_id"] == MetricPoint.objects.filter(job=job).latest("id").id


def test_metric_keys_lists_each_key_once(job):
    _bulk(job, "loss", range(50))
    _bulk(job, "val_loss", range(0, 50, 10))
    assert series.metric_keys(job=job) == ["loss", "val_loss"]
