"""The job page's controls follow the job's state without a reload: Resume after a cancel, never on a
succeeded job; "live" only while the job can still change."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.platform import browser_log_in

pytestmark = [pytest.mark.e2e, pytest.mark.browser]

SHOTS = Path("/tmp/shots")


@pytest.fixture
def job_with_checkpoint(transactional_db, demo_config):
    from experiments.jobs import job_start
    from experiments.models import Checkpoint

    job = job_start(owner=demo_config.owner, config=demo_config)
    Checkpoint.objects.create(job=job, step=10, path="/nowhere/checkpoint-10", metrics={"loss": 2.5})
    return job


def test_cancel_enables_resume_and_ends_live(page, live_server, job_with_checkpoint):
    SHOTS.mkdir(exist_ok=True)
    base = live_server.url
    browser_log_in(page, base)
    page.goto(f"{base}/jobs/{job_with_checkpoint.public_id}/")
    assert page.locator("#resume-job").is_disabled()  # queued: nothing to resume yet
    page.click("#cancel-job")
    page.wait_for_function("document.getElementById('job-status').textContent === 'cancelled'")
    assert page.locator("#resume-job").is_enabled()  # no reload needed
    assert page.locator("#cancel-job").is_disabled()
    assert page.locator("#ws-state").inner_text() == "finished"
    page.screenshot(path=str(SHOTS / "job_cancelled.png"))


def test_a_succeeded_job_cannot_be_resumed_and_is_not_live(page, live_server, job_with_checkpoint):
    from experiments.models import JobStatus

    job = job_with_checkpoint
    job.status = JobStatus.SUCCEEDED
    job.save(update_fields=["status"])
    base = live_server.url
    browser_log_in(page, base)
    page.goto(f"{base}/jobs/{job.public_id}/")
    page.wait_for_timeout(500)  # the websocket tries (and fails: live_server has none) meanwhile
    assert page.locator("#resume-job").is_disabled()
    assert page.locator("#resume-job").get_attribute("title") == "The job finished: nothing to resume"
    assert page.locator("#ws-state").inner_text() == "finished"
    assert page.locator("#job-overview #ov-hyperparameters tr").count() >= 5
    # charts: no GPU panel for a finished job that reported no GPU memory (a CPU worker); legends under
    # the plots; tokens/s ticks in SI ("8k", not "0.8e+4"); empty panels name what they wait for
    page.wait_for_function("document.getElementById('chart-loss').layout !== undefined")
    assert page.locator("#chart-gpu_memory").is_hidden()
    assert page.evaluate("document.getElementById('chart-loss').layout.legend.orientation") == "h"
    assert page.evaluate("document.getElementById('chart-tokens_per_sec').layout.yaxis.tickformat") == "~s"
    assert "No tokens / s reported yet" in page.locator("#chart-tokens_per_sec").text_content()
    assert "gpu_mem_allocated_mb" not in page.locator("#charts, .charts").first.text_content()
    page.screenshot(path=str(SHOTS / "job_overview.png"), full_page=True)


def test_the_training_form_groups_runs_in_a_named_experiment(
    page, live_server, transactional_db, demo_config
):
    from experiments.models import TrainingJob

    SHOTS.mkdir(exist_ok=True)
    base = live_server.url
    browser_log_in(page, base)
    page.goto(base + "/configs/new/")
    page.fill("input[name=experiment_name]", "lr sweep")
    page.fill("input[name=experiment_tags]", "sweep, tiny")
    page.fill("input[name=learning_rate]", "0.001")
    page.screenshot(path=str(SHOTS / "config_form_experiment.png"), full_page=True)
    page.click("#start-training")
    page.wait_for_url("**/jobs/job-*/")
    first = TrainingJob.objects.order_by("pk").last()
    assert (first.experiment.name, first.experiment.tags) == ("lr sweep", ["sweep", "tiny"])

    page.goto(base + "/configs/new/")
    page.select_option("#experiment-choice", first.experiment.public_id)
    assert page.locator("#new-experiment").is_hidden()
    page.fill("input[name=learning_rate]", "0.0005")
    page.click("#start-training")
    page.wait_for_url("**/jobs/job-*/")
    second = TrainingJob.objects.order_by("pk").last()
    assert second.pk != first.pk and second.experiment_id == first.experiment_id

    page.goto(f"{base}/experiments/?q={first.experiment.public_id}")
    assert page.locator("#runs tbody tr").count() == 2
    assert page.locator("#runs thead th.hp").all_inner_texts() == ["learning_rate"]
    page.screenshot(path=str(SHOTS / "runs_table_experiment.png"), full_page=True)
