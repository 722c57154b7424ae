"""The runs table, the runs API and compare stay a fixed number of queries whatever the number of runs,
and sort and page in the database (benchmarks/runs_at_scale.py measures them with 10,000 runs)."""

from __future__ import annotations

import os
import re
from datetime import timedelta

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from experiments.ingest import PointIn, metric_points_ingest
from experiments.models import JobStatus, TrainingJob
from experiments.services import experiment_create, training_config_create

pytestmark = pytest.mark.django_db


def _config(demo_config, learning_rate: float, experiment=None):
    return training_config_create(
        owner=demo_config.owner, dataset_id=demo_config.dataset_version.dataset.public_id,
        model_base="t4dm-tiny", hyperparams={"learning_rate": learning_rate, "epochs": 1}, experiment=experiment,
    )  # fmt: skip


def _runs(config, count: int, *, status=JobStatus.SUCCEEDED, age_days: int = 0, loss: float | None = 1.0):
    now = timezone.now() - timedelta(days=age_days)
    jobs = TrainingJob.objects.bulk_create(
        [
            TrainingJob(
                owner=config.owner,
                config=config,
                experiment=config.experiment,
                status=status,
                created_at=now - timedelta(seconds=i),
                started_at=now,
                finished_at=now,
            )  # fmt: skip
            for i in range(count)
        ]
    )
    if loss is not None:
        for job in jobs:
            metric_points_ingest(
                job=job,
                points=[
                    PointIn("loss", 1, loss + 1, wall_time=1.7e9),
                    PointIn("loss", 2, loss, wall_time=1.7e9),
                ],
            )
    return jobs


def _queries(client, url: str, **headers) -> int:
    client.get(url, headers=headers)  # once before: a token's first use of the minute is recorded
    with CaptureQueriesContext(connection) as captured:
        response = client.get(url, headers=headers)
    assert response.status_code == 200, response.content[:500]
    return len(captured)


def _job_ids(html: str) -> list[str]:
    return re.findall(r'<td class="run-cell"><a href="/jobs/(job-\d+)/', html)


def test_the_runs_page_and_api_do_not_read_per_run(client, demo_config, researcher):
    client.force_login(researcher)
    _runs(demo_config, 3)
    _runs(_config(demo_config, 1e-4), 2)
    auth = {"Authorization": f"Bearer {researcher.raw_token}"}
    few = [_queries(client, "/experiments/?sort=loss__final"), _queries(client, "/api/v1/runs", **auth)]
    _runs(demo_config, 60)
    _runs(_config(demo_config, 2e-4), 60)
    many = [_queries(client, "/experiments/?sort=loss__final"), _queries(client, "/api/v1/runs", **auth)]
    assert many == few


def test_a_sort_orders_every_run_and_the_page_holds_fifty(client, demo_config, researcher):
    client.force_login(researcher)
    oldest = _runs(_config(demo_config, 9e-3), 1, status=JobStatus.FAILED, age_days=30, loss=0.01)[0]
    _runs(demo_config, 205, loss=None)  # newer than it: once the newest 200 were all the list read
    for sort in ("status", "loss__final", "loss__min", "-hp.learning_rate"):
        html = client.get("/experiments/", {"sort": sort}).content.decode()
        ids = _job_ids(html)
        assert ids[0] == oldest.public_id, sort
        assert len(ids) == 50 and "206 runs" in html and 'rel="next"' in html
    second = _job_ids(client.get("/experiments/", {"sort": "status", "page": 2}).content.decode())
    assert len(second) == 50 and oldest.public_id not in second
    last = client.get("/experiments/", {"sort": "status", "page": 5}).content.decode()
    assert len(_job_ids(last)) == 6 and 'rel="next"' not in last and 'rel="prev"' in last
    # Runs without the value go last in both directions.
    assert (
        _job_ids(client.get("/experiments/", {"sort": "-loss__final"}).content.decode())[0]
        == oldest.public_id
    )


def test_compare_reads_ten_runs_in_as_many_queries_as_two(client, demo_config, researcher):
    client.force_login(researcher)
    jobs = _runs(demo_config, 5) + _runs(_config(demo_config, 1e-4), 5)
    auth = {"Authorization": f"Bearer {researcher.raw_token}"}
    two = ",".join(j.public_id for j in jobs[:2])
    ten = ",".join(j.public_id for j in jobs)
    assert _queries(client, f"/experiments/compare/?jobs={ten}") == _queries(
        client, f"/experiments/compare/?jobs={two}"
    )
    assert _queries(client, f"/api/v1/runs/compare?job_ids={ten}", **auth) == _queries(
        client, f"/api/v1/runs/compare?job_ids={two}", **auth
    )
    compared = client.get(f"/api/v1/runs/compare?job_ids={ten}", headers=auth).json()
    assert [r["job_id"] for r in compared["runs"]] == [j.public_id for j in jobs]  # in the order asked
    missing = client.get(f"/api/v1/runs/compare?job_ids={jobs[0].public_id},job-99999", headers=auth)
    assert missing.status_code == 404 and "job-99999" in missing.text


def test_the_tag_filter_matches_experiment_and_run_tags(client, demo_config, researcher):
    client.force_login(researcher)
    tagged = experiment_create(owner=researcher, name="tagged", tags=["sweep"])
    by_experiment = _runs(_config(demo_config, 1e-4, experiment=tagged), 2, loss=None)
    by_run = _runs(demo_config, 1, loss=None)[0]
    by_run.tags = ["sweep"]
    by_run.save(update_fields=["tags"])
    _runs(demo_config, 3, loss=None)
    ids = _job_ids(client.get("/experiments/", {"tag": "sweep"}).content.decode())
    assert sorted(ids) == sorted(j.public_id for j in [*by_experiment, by_run])


@pytest.mark.production
def test_the_same_holds_on_postgresql():
    if os.environ.get("T4DM_EXPECT_DB_VENDOR") == "postgresql":
        pytest.skip("this is the rerun")
    from tests.rerun import rerun_on_postgresql

    done, summary = rerun_on_postgresql(
        "tests/experiments/test_runs_at_scale_queries.py", "-m", "not production", db_prefix="t4dm_runs_scale"
    )
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-2000:]
    assert "4 passed" in summary, summary
