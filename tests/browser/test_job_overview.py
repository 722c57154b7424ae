"""The job page's overview panel: hyperparameters, duration, final metrics, and links to the dataset,
the experiment, the model version and the evaluations (they were plain text)."""

from __future__ import annotations

import re
from datetime import timedelta

import pytest

from experiments.models import Evaluation, TrainingJob

pytestmark = pytest.mark.django_db


def test_the_overview_panel(client, demo_config):
    job = TrainingJob.objects.create(
        owner=demo_config.owner, config=demo_config, experiment=demo_config.experiment
    )
    job.started_at = job.created_at
    job.finished_at = job.started_at + timedelta(minutes=2, seconds=5)
    job.latest_metrics = {"loss": 1.25, "tokens_per_sec": 812.5, "eta_seconds": 0}
    job.save()
    evaluation = Evaluation.objects.create(owner=job.owner, job=job, status="succeeded", kind="evaluate",
                                           model_path="x", metrics={"perplexity": 9.1})  # fmt: skip
    client.force_login(job.owner)
    html = re.sub(r"\s+", " ", client.get(f"/jobs/{job.public_id}/").content.decode())
    dataset = demo_config.dataset_version.dataset.public_id
    assert f'<a href="/datasets/{dataset}/">{dataset}</a>' in html
    assert f'href="/experiments/?q={job.experiment.public_id}"' in html
    assert f'<a href="/evaluations/{evaluation.public_id}/">{evaluation.public_id}</a>' in html
    assert '<dd id="ov-duration">2m 5s</dd>' in html
    assert '<tr><th scope="row">learning_rate</th><td class="num">0.003</td></tr>' in html
    assert '<tr><th scope="row">tokens_per_sec</th><td class="num">812.5000</td></tr>' in html
    assert "eta_seconds</th>" not in html
