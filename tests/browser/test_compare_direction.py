"""Compare colours deltas by each metric's direction: a loss drop and a tokens/s rise are green, a
tokens/s drop is red, a learning-rate change is neither."""

from __future__ import annotations

import re

import pytest

from experiments.ingest import PointIn, metric_points_ingest
from experiments.metric_direction import delta_trend, metric_direction
from experiments.models import TrainingJob

pytestmark = pytest.mark.django_db


@pytest.mark.parametrize(
    ("key", "direction"),
    [("loss", "lower"), ("val_loss", "lower"), ("eval/perplexity", "lower"), ("accuracy", "higher"),
     ("tokens_per_second", "higher"), ("tokens_per_sec", "higher"), ("learning_rate", None),
     ("grad_norm", None), ("gpu_memory_mb", None), ("rougeL", "higher")],
)  # fmt: skip
def test_metric_direction(key, direction):
    assert metric_direction(key) == direction


def test_delta_trend():
    assert (delta_trend("loss", -0.5), delta_trend("loss", 0.5)) == ("better", "worse")
    assert (delta_trend("tokens_per_second", -10), delta_trend("accuracy", 0.1)) == ("worse", "better")
    assert delta_trend("learning_rate", 1e-3) == "" and delta_trend("loss", None) == ""


def test_the_compare_page_colours_by_direction(client, demo_config):
    jobs = [TrainingJob.objects.create(owner=demo_config.owner, config=demo_config, experiment=demo_config.experiment)
            for _ in range(2)]  # fmt: skip
    metric_points_ingest(
        job=jobs[0], points=[PointIn("loss", 1, 2.0), PointIn("tokens_per_second", 1, 900.0)]
    )
    metric_points_ingest(
        job=jobs[1], points=[PointIn("loss", 1, 1.5), PointIn("tokens_per_second", 1, 700.0)]
    )
    client.force_login(demo_config.owner)
    html = client.get(
        "/experiments/compare/", {"jobs": f"{jobs[0].public_id},{jobs[1].public_id}"}
    ).content.decode()
    html = re.sub(r"\s+", " ", html)
    assert '<span class="delta better">(-0.5000)</span>' in html  # loss fell: better
    assert '<span class="delta worse">(-200.0000)</span>' in html  # tokens/s fell: worse, red
