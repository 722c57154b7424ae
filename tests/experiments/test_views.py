"""Dashboard pages: who may open them, and what they show."""

from __future__ import annotations

import json
from datetime import UTC

import pytest

from experiments.ingest import PointIn, metric_points_ingest
from experiments.models import Checkpoint, TrainingJob
from experiments.services import training_config_create

pytestmark = pytest.mark.django_db


@pytest.fixture
def job(demo_config):
    return TrainingJob.objects.create(
        owner=demo_config.owner, config=demo_config, experiment=demo_config.experiment
    )


def _login(client, user):
    client.force_login(user)
    return client


def _second_job(demo_config, **hyperparams) -> TrainingJob:
    config = training_config_create(
        owner=demo_config.owner,
        dataset_id=demo_config.dataset_version.dataset.public_id,
        model_base="t4dm-tiny",
        hyperparams={"learning_rate": 3e-3, "epochs": 1, **hyperparams},
    )
    return TrainingJob.objects.create(owner=config.owner, config=config, experiment=config.experiment)


@pytest.mark.parametrize("url", ["/", "/experiments/", "/configs/new/", "/jobs/job-001/"])
def test_an_anonymous_visitor_is_sent_to_log_in(client, url):
    response = client.get(url)
    assert response.status_code == 302 and response["Location"].startswith("/login/")


def test_an_evaluator_lands_on_the_rating_queue(client, make_user):
    _login(client, make_user("eve", role="evaluator"))
    response = client.get("/", follow=True)
    assert response.redirect_chain[-1][0] == "/rate/"
    assert b"No rating tasks are assigned to you" in response.content
    assert b"Experiments</a>" not in response.content  # navigation by role


@pytest.mark.parametrize(
    "url", ["/experiments/", "/experiments/compare/?jobs=job-001,job-002", "/configs/new/"]
)
def test_an_evaluator_is_refused_the_dashboards(client, make_user, url):
    _login(client, make_user("eve", role="evaluator"))
    assert client.get(url).status_code == 403


def test_an_evaluator_is_refused_a_job_page(client, make_user, job):
    _login(client, make_user("eve", role="evaluator"))
    assert client.get(f"/jobs/{job.public_id}/").status_code == 403


def test_the_job_page_shows_charts_checkpoints_and_a_resume_button(client, job):
    Checkpoint.objects.create(job=job, step=40, path="/x/checkpoint-40", metrics={"loss": 1.5}, is_best=True)
    job.mark_succeeded()
    response = _login(client, job.owner).get(f"/jobs/{job.public_id}/")
    html = response.content.decode()
    for chart in ("loss", "learning_rate", "grad_norm", "gpu_memory", "tokens_per_sec"):
        assert f'id="chart-{chart}"' in html
    assert 'id="checkpoints"' in html and "★ best" in html and "1.5000" in html
    assert 'class="ckpt-evaluate"' in html  # wired to the evaluation API (browser test clicks it)
    assert 'title="the job becomes a model version when it succeeds"' in html  # no version: disabled
    assert 'id="resume-job" disabled' in html  # succeeded: nothing to resume (issue 19)
    assert "The job finished: nothing to resume" in html


def test_the_job_page_says_when_the_job_started_and_finished(client, job):
    """The job page showed no start or finish time (issue 19 audit)."""
    from datetime import datetime

    queued = _login(client, job.owner).get(f"/jobs/{job.public_id}/").content.decode()
    assert 'id="ov-started"' in queued and "not yet (queued" in queued and 'id="ov-finished"' not in queued
    type(job).objects.filter(pk=job.pk).update(
        started_at=datetime(2026, 12, 5, 9, 30, tzinfo=UTC),
        finished_at=datetime(2026, 12, 5, 9, 42, tzinfo=UTC),
        status="succeeded",
    )
    html = client.get(f"/jobs/{job.public_id}/").content.decode()
    assert '<time datetime="2026-12-05T09:30:00+00:00">2026-12-05 09:30</time>' in html
    assert '<dd id="ov-finished"><time datetime="2026-12-05T09:42:00+00:00">2026-12-05 09:42</time>' in html


def test_the_overview_shows_active_jobs_and_dataset_problems(client, job):
    job.mark_queued()
    version = job.config.dataset_version
    version.validation_status = "warning"
    version.save(update_fields=["validation_status"])
    html = _login(client, job.owner).get("/").content.decode()
    assert 'id="active-jobs"' in html and job.public_id in html
    assert 'id="dataset-problems"' in html and "warning" in html
    assert 'id="start-demo"' in html


def test_the_experiments_list_filters_and_shows_final_and_min_metrics(client, demo_config, job):
    other = _second_job(demo_config)
    metric_points_ingest(
        job=job, points=[PointIn("loss", 1, 2.0), PointIn("loss", 2, 0.5), PointIn("loss", 3, 0.8)]
    )
    job.mark_succeeded()
    _login(client, job.owner)
    html = client.get("/experiments/", {"status": "succeeded"}).content.decode()
    assert job.public_id in html and other.public_id not in html
    assert "0.8000" in html and "0.5000" in html  # final and min of loss
    html = client.get("/experiments/", {"q": other.public_id}).content.decode()
    assert other.public_id in html and f">{job.public_id}<" not in html


def test_the_experiments_list_sorts_by_a_metric(client, demo_config, job):
    other = _second_job(demo_config)
    metric_points_ingest(job=job, points=[PointIn("loss", 1, 2.0)])
    metric_points_ingest(job=other, points=[PointIn("loss", 1, 1.0)])
    html = _login(client, job.owner).get("/experiments/", {"sort": "loss__final"}).content.decode()
    assert html.index(f">{other.public_id}<") < html.index(f">{job.public_id}<")


def test_the_compare_page_highlights_the_differing_parameter(client, demo_config, job):
    other = _second_job(demo_config, learning_rate=1e-3)
    metric_points_ingest(job=job, points=[PointIn("loss", 1, 2.0)])
    metric_points_ingest(job=other, points=[PointIn("loss", 1, 1.5)])
    html = (
        _login(client, job.owner)
        .get("/experiments/compare/", {"jobs": f"{job.public_id},{other.public_id}"})
        .content.decode()
    )
    assert '<tr class="differs" data-param="learning_rate">' in html
    assert '<tr class="same" data-param="batch_size">' in html
    assert "(-0.5000)" in html  # the loss delta against the first run


def test_the_compare_page_writes_settings_as_people_read_them(client, demo_config, job):
    """Lists and booleans showed as Python text (['q_proj', 'v_proj'], False) (issue 19 audit)."""
    other = _second_job(demo_config, learning_rate=1e-3)
    html = (
        _login(client, job.owner)
        .get("/experiments/compare/", {"jobs": f"{job.public_id},{other.public_id}"})
        .content.decode()
    )
    table = html.split('<tr class="', 1)[1].split("</table>", 1)[0]
    assert "[&#x27;" not in table and "[" not in table and ">False<" not in table and ">True<" not in table


def test_the_compare_page_needs_two_to_ten_runs(client, job):
    response = _login(client, job.owner).get("/experiments/compare/", {"jobs": job.public_id})
    assert response.status_code == 400 and b"pick 2 to 10 runs" in response.content


def test_someone_elses_run_cannot_be_compared(client, demo_config, job, make_user):
    other = _second_job(demo_config)
    response = _login(client, make_user("oscar")).get(
        "/experiments/compare/", {"jobs": f"{job.public_id},{other.public_id}"}
    )
    assert response.status_code == 404


def test_the_config_form_estimates_resources(client, demo_config):
    _login(client, demo_config.owner)
    page = client.get("/configs/new/").content.decode()
    assert demo_config.dataset_version.dataset.public_id in page and 'name="learning_rate"' in page
    payload = {
        "dataset_id": demo_config.dataset_version.dataset.public_id,
        "model_base": "llama-3-8b",
        "approach": "lora",
        "hyperparams": {"epochs": 2},
    }
    response = client.post("/configs/estimate/", json.dumps(payload), content_type="application/json")
    assert response.status_code == 200
    assert response.json()["estimate"]["recommended_gpu"] != "unknown"
    assert response.json()["hyperparameters"]["epochs"] == 2


def test_the_config_estimate_explains_a_bad_value(client, demo_config):
    _login(client, demo_config.owner)
    payload = {
        "dataset_id": demo_config.dataset_version.dataset.public_id,
        "model_base": "llama-3-8b",
        "hyperparams": {"learning_rate": -1},
    }
    response = client.post("/configs/estimate/", json.dumps(payload), content_type="application/json")
    assert (
        response.status_code == 400
        and "learning_rate: must be a positive number" in response.json()["error"]["message"]
    )


def test_the_metrics_api_serves_a_zoomed_range(api, job):
    metric_points_ingest(job=job, points=[PointIn("loss", s, float(s)) for s in range(1, 101)])
    response = api.get(job.owner, f"/jobs/{job.public_id}/metrics", key="loss", start=10, end=12)
    assert response.status_code == 200
    assert [p[:2] for p in response.json()["series"]["loss"]] == [[10, 10.0], [11, 11.0], [12, 12.0]]


def test_the_runs_api_filters_and_compares(api, demo_config, job):
    other = _second_job(demo_config, learning_rate=1e-3)
    metric_points_ingest(job=job, points=[PointIn("loss", 1, 2.0), PointIn("loss", 2, 1.0)])
    runs = api.get(job.owner, "/runs", q=job.public_id).json()
    assert [r["job"]["job_id"] for r in runs] == [job.public_id]
    assert runs[0]["metrics"]["loss"] == {"final": 1.0, "min": 1.0}
    comparison = api.get(job.owner, "/runs/compare", job_ids=f"{job.public_id},{other.public_id}").json()
    assert "learning_rate" in comparison["differing"] and "batch_size" not in comparison["differing"]


def test_a_running_job_shows_its_eta_on_the_overview(client, job):
    job.mark_queued()
    job.mark_running(worker="gpu0@box")
    job.record_progress(step=10, total_steps=20, epoch=0.5)
    job.latest_metrics = {"eta_seconds": 200}
    job.save(update_fields=["latest_metrics"])
    html = _login(client, job.owner).get("/").content.decode()
    assert "3m 20s" in html and "gpu0@box" in html
