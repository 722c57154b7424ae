"""The job page's "Best" column follows the workflow page's rule (issue 19: it was empty while the
workflow page named the best step): the Trainer's mark, else the lowest val_loss / loss, else the latest."""

from __future__ import annotations

import re

import pytest

from experiments.models import Checkpoint, JobStatus, TrainingJob
from experiments.workflows.services import _best_checkpoint

pytestmark = pytest.mark.django_db


def _job(demo_config, status):
    return TrainingJob.objects.create(
        owner=demo_config.owner, config=demo_config, experiment=demo_config.experiment, status=status
    )


def _starred(client, job) -> list[int]:
    client.force_login(job.owner)
    html = re.sub(r"\s+", " ", client.get(f"/jobs/{job.public_id}/").content.decode())
    return [int(s) for s in re.findall(r'<tr data-step="(\d+)" class="best">', html)]


@pytest.mark.parametrize(
    "metrics, marked",
    [
        ([{"loss": 2.0}, {"loss": 1.5}, {"loss": 1.7}], None),  # lowest loss: step 20
        (
            [{"loss": 2.0, "val_loss": 1.0}, {"loss": 1.5, "val_loss": 1.2}, {"loss": 1.0, "val_loss": 1.1}],
            None,
        ),
        ([{}, {}, {}], None),  # nothing scored: the latest
        ([{"loss": 2.0}, {"loss": 1.5}, {"loss": 1.7}], 30),  # the Trainer's mark wins
    ],
)
def test_the_best_column_agrees_with_the_workflow_page(client, demo_config, metrics, marked):
    job = _job(demo_config, JobStatus.SUCCEEDED)
    for i, m in enumerate(metrics, start=1):
        Checkpoint.objects.create(job=job, step=10 * i, path=f"/nowhere/checkpoint-{10 * i}", metrics=m,
                                  is_best=(10 * i == marked))  # fmt: skip
    workflow_best = _best_checkpoint(job, None)
    assert _starred(client, job) == [workflow_best["step"]]


def test_a_running_job_stars_only_the_trainers_mark(client, demo_config):
    job = _job(demo_config, JobStatus.RUNNING)
    Checkpoint.objects.create(job=job, step=10, path="/nowhere/checkpoint-10", metrics={"loss": 1.0})
    assert _starred(client, job) == []
