"""A downsampled series has the raw series' shape: every point returned is a real point at its own step
(M4: first, last, lowest and highest point per bucket), and max_points is honoured."""

from __future__ import annotations

import math

import pytest

from experiments.ingest import PointIn, metric_points_ingest
from experiments.models import MetricRollup, TrainingJob
from experiments.tracking import series

pytestmark = pytest.mark.django_db


@pytest.fixture
def job(demo_config):
    return TrainingJob.objects.create(
        owner=demo_config.owner, config=demo_config, experiment=demo_config.experiment
    )


@pytest.fixture
def small_long_series(monkeypatch):
    # The summary's code path at a size a unit test can afford.
    monkeypatch.setattr(series, "LONG_SERIES_POINTS", 500)
    monkeypatch.setattr(series, "FINE_BUCKETS", 64)
    monkeypatch.setattr(MetricRollup, "ROLLUP_WIDTH", 16)


def _ingest(job, key, values: dict[int, float]) -> None:
    points = [PointIn(key, s, v, wall_time=1_700_000_000 + s) for s, v in values.items()]
    for begin in range(0, len(points), 1000):  # out of step order, as retries and ranks send them
        metric_points_ingest(job=job, points=points[begin : begin + 1000][::-1])


def _loss(step: int) -> float:
    # A falling loss with noise: the shape a training chart must keep.
    return 5.0 * math.exp(-step / 1500) + 0.05 * math.sin(step * 0.7)


def _assert_same_shape(raw: dict[int, float], drawn: list, groups: int) -> None:
    # Every drawn point is a raw point at its own step (no value moved to a bucket's edge).
    assert all(raw[int(step)] == value for step, value, _ in drawn), [
        (s, v, raw[int(s)]) for s, v, _ in drawn if raw[int(s)] != v
    ][:5]
    steps = sorted(raw)
    assert drawn[0][0] == steps[0] and drawn[-1][0] == steps[-1]  # starts and ends where the series does
    assert min(v for _, v, _ in drawn) == min(raw.values()) and max(v for _, v, _ in drawn) == max(
        raw.values()
    )
    # The chart's trend follows the raw one: the drawn line's value at each eighth of the run is
    # within the raw series' range around it.
    for i in range(1, 8):
        at = steps[len(steps) * i // 8]
        near = [v for s, v, _ in drawn if abs(s - at) <= len(steps) // groups * 2]
        window = [raw[s] for s in steps if abs(s - at) <= len(steps) // groups * 3]
        assert near and min(window) <= min(near) and max(near) <= max(window)


@pytest.mark.parametrize("via_summary", [False, True], ids=["raw", "summary"])
def test_a_downsampled_falling_loss_is_drawn_falling_with_every_point_at_its_step(
    job, small_long_series, via_summary
):
    raw = {s: _loss(s) for s in range(6_000 if via_summary else 450)}
    _ingest(job, "loss", raw)
    result = series.metric_series_range(job=job, key="loss", max_points=120)
    drawn = result["series"]["loss"]
    assert result["downsampled"] is True and len(drawn) <= 120
    _assert_same_shape(raw, drawn, groups=30)
    # Step 0 shows the value sent at step 0, not the bucket's maximum.
    assert drawn[0][:2] == [0, raw[0]]


def test_the_summary_places_a_dip_and_a_spike_where_they_happened(job, small_long_series):
    raw = {s: 1.0 for s in range(5_000)}
    raw[1_234], raw[3_210] = -7.0, 9.0
    _ingest(job, "loss", raw)
    drawn = series.metric_series_range(job=job, key="loss", max_points=80)["series"]["loss"]
    assert [1_234, -7.0] in [p[:2] for p in drawn] and [3_210, 9.0] in [p[:2] for p in drawn]


def test_max_points_above_the_range_returns_every_point_exactly(job, small_long_series):
    raw = {s: _loss(s) for s in range(3_000)}
    _ingest(job, "loss", raw)
    series.metric_series_range(job=job, key="loss", max_points=100)  # builds the summary
    result = series.metric_series_range(job=job, key="loss", max_points=5_000)
    assert result["downsampled"] is False
    assert [p[:2] for p in result["series"]["loss"]] == [[s, raw[s]] for s in range(3_000)]


def test_the_api_reads_a_long_series_exactly_when_asked_for_enough_points(api, job, small_long_series):
    raw = {s: _loss(s) for s in range(2_000)}
    _ingest(job, "loss", raw)
    body = api.get(job.owner, f"/jobs/{job.public_id}/metrics", key="loss", max_points=2000).json()
    assert [p[:2] for p in body["series"]["loss"]] == [[s, raw[s]] for s in range(2_000)]
    body = api.get(job.owner, f"/jobs/{job.public_id}/metrics", key="loss", max_points=200).json()
    _assert_same_shape(raw, body["series"]["loss"], groups=50)
