"""The runs table shows what tells runs apart: the differing hyperparameters (or chosen ones), the
duration, an evaluation's metrics (accuracy), and the experiment as a link that groups its runs."""

from __future__ import annotations

import re
from datetime import timedelta

import pytest

from experiments.ingest import PointIn, metric_points_ingest
from experiments.models import Evaluation, TrainingJob
from experiments.services import training_config_create

pytestmark = pytest.mark.django_db


def _run(demo_config, **hyperparams) -> TrainingJob:
    config = training_config_create(
        owner=demo_config.owner, dataset_id=demo_config.dataset_version.dataset.public_id,
        model_base="t4dm-tiny", hyperparams={"learning_rate": 3e-3, "epochs": 1, **hyperparams},
    )  # fmt: skip
    return TrainingJob.objects.create(owner=config.owner, config=config, experiment=config.experiment)


def _table(client, **params) -> str:
    return re.sub(r"\s+", " ", client.get("/experiments/", params).content.decode())


def test_the_differing_learning_rate_and_the_duration_are_columns(client, demo_config):
    fast = _run(demo_config, learning_rate=1e-3)
    _run(demo_config, learning_rate=5e-4)
    fast.started_at = fast.created_at
    fast.finished_at = fast.started_at + timedelta(minutes=5, seconds=3)
    fast.save()
    client.force_login(demo_config.owner)
    html = _table(client)
    assert 'data-sort="hp.learning_rate">learning_rate</a>' in html
    assert 'data-sort="hp.epochs"' not in html  # the same in every run: not a default column
    assert '<td class="num hp">0.001</td>' in html and '<td class="num hp">0.0005</td>' in html
    assert '<td class="num">5m 3s</td>' in html
    assert f'href="/experiments/?q={fast.experiment.public_id}"' in html  # the experiment groups its runs
    chosen = _table(client, hp="epochs,lora_r")
    assert 'data-sort="hp.epochs"' in chosen and 'data-sort="hp.learning_rate"' not in chosen


def test_an_evaluation_metric_fills_its_column_and_best_follows_direction(client, demo_config):
    run = _run(demo_config)
    metric_points_ingest(
        job=run, points=[PointIn("tokens_per_second", 1, 700.0), PointIn("tokens_per_second", 2, 650.0)]
    )
    Evaluation.objects.create(owner=run.owner, job=run, status="succeeded", kind="evaluate", model_path="x",
                              metrics={"accuracy": 0.91})  # fmt: skip
    client.force_login(demo_config.owner)
    html = _table(client, metric="accuracy,tokens_per_second")
    assert "accuracy (final)" in html and "accuracy (max)" in html and "tokens_per_second (max)" in html
    assert '<td class="num">0.9100</td>' in html
    assert '<td class="num">700.0000</td>' in html  # the best tokens/s is the highest
