"""The job page in the system Chromium: points reported by the worker appear on the chart live."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from tests.e2e.test_training_live import HYPERPARAMS, start_job
from tests.platform import ADMIN_PASSWORD

pytestmark = [pytest.mark.e2e, pytest.mark.browser]

# T4DM_SCREENSHOTS_DIR keeps screenshots out of test-results/, which pytest-playwright empties whenever
# a session starts (another run on the same tree would delete them before anyone looked).
SCREENSHOTS = Path(
    os.environ.get("T4DM_SCREENSHOTS_DIR") or Path(__file__).resolve().parents[2] / "test-results"
)


def _log_in(page, base_url: str) -> None:
    page.goto(base_url + "/login/")
    page.fill("input[name=username]", "admin")
    page.fill("input[name=password]", ADMIN_PASSWORD)
    page.click("button[type=submit]")
    page.wait_for_url(base_url + "/")


def _points(page, chart: str) -> int:
    return int(page.get_attribute(f"#chart-{chart}", "data-points"))


def test_worker_points_appear_on_the_chart_live(page, embedded_platform):
    base = embedded_platform.base_url
    _log_in(page, base)
    job_id = start_job(embedded_platform, hyperparams={**HYPERPARAMS, "epochs": 60})
    page.goto(f"{base}/jobs/{job_id}/")
    page.wait_for_function("document.getElementById('ws-state').textContent === 'live'", timeout=30_000)

    # The chart grows while the job runs: two readings while running, the second larger.
    page.wait_for_function(
        "Number(document.getElementById('chart-loss').dataset.points) > 0", timeout=120_000
    )
    first = _points(page, "loss")
    page.wait_for_function(
        f"Number(document.getElementById('chart-loss').dataset.points) > {first}", timeout=60_000
    )
    assert page.text_content("#job-status") in ("running", "succeeded")
    SCREENSHOTS.mkdir(exist_ok=True)
    page.screenshot(path=str(SCREENSHOTS / "job_page_running.png"), full_page=True)

    page.wait_for_function(
        "document.getElementById('job-status').textContent === 'succeeded'", timeout=300_000
    )
    time.sleep(0.6)  # one render tick (250 ms) after the last message
    with embedded_platform.http() as http:
        stored = http.get(f"/jobs/{job_id}/metrics").json()["series"]
    assert _points(page, "loss") == len(stored["loss"]) + len(stored.get("val_loss", []))
    assert _points(page, "learning_rate") == len(stored["learning_rate"])
    assert "Loss" in page.text_content("#chart-loss .gtitle")
    page.screenshot(path=str(SCREENSHOTS / "job_page_done.png"), full_page=True)

    # Checkpoints saved while the page was open got their rows live, the same as a reload shows.
    rows = "rows => rows.map(r => [r.cells[0].textContent.trim(), r.cells[1].textContent.trim()])"
    live = page.eval_on_selector_all("#checkpoints tbody tr", rows)
    assert live and page.is_hidden("#no-checkpoints")
    page.reload()
    assert page.eval_on_selector_all("#checkpoints tbody tr", rows) == live


def test_a_dropped_websocket_reconnects_and_fills_the_gap(page, embedded_platform):
    base = embedded_platform.base_url
    _log_in(page, base)
    job_id = start_job(embedded_platform, hyperparams={**HYPERPARAMS, "epochs": 60})
    page.goto(f"{base}/jobs/{job_id}/")
    page.wait_for_function(
        "Number(document.getElementById('chart-loss').dataset.points) > 3", timeout=120_000
    )
    page.evaluate("window.t4dmJobSocket().close()")
    page.wait_for_function(
        "document.getElementById('ws-state').textContent === 'reconnecting…'", timeout=5_000
    )
    page.wait_for_function(
        "document.getElementById('job-status').textContent === 'succeeded'", timeout=300_000
    )
    time.sleep(0.6)
    with embedded_platform.http() as http:
        stored = http.get(f"/jobs/{job_id}/metrics").json()["series"]
    assert _points(page, "loss") == len(stored["loss"]) + len(stored.get("val_loss", []))


def test_the_overview_lists_jobs_and_starts_the_demo(page, embedded_platform):
    base = embedded_platform.base_url
    _log_in(page, base)
    page.click("#start-demo")
    page.wait_for_url(f"{base}/jobs/job-*/")
    page.wait_for_function(
        "Number(document.getElementById('chart-loss').dataset.points) > 0", timeout=120_000
    )
    page.goto(base + "/")
    assert page.locator("#jobs tbody tr").count() >= 1
    page.screenshot(path=str(SCREENSHOTS / "overview.png"), full_page=True)


def test_checkpoint_actions_evaluate_and_link_to_the_version(page, embedded_platform):
    base = embedded_platform.base_url
    job_id = start_job(embedded_platform, hyperparams={**HYPERPARAMS, "epochs": 10})  # 60 steps, ckpt at 50
    with embedded_platform.http() as http:
        deadline = time.monotonic() + 300
        while http.get(f"/jobs/{job_id}").json()["status"] != "succeeded":
            assert time.monotonic() < deadline, "the job did not succeed in time"
            time.sleep(0.5)
    _log_in(page, base)
    page.goto(f"{base}/jobs/{job_id}/")
    # auto_version made the job a model version: Promote and Chat lead to it.
    assert (
        page.locator("#checkpoints a", has_text="Promote").first.get_attribute("href").startswith("/models/")
    )
    # The page leaves for the evaluation at once; a refusal stays on it: its message is the failure's.
    with page.expect_response(lambda r: r.url.endswith("/api/v1/evaluations"), timeout=30_000) as answer:
        page.locator(".ckpt-evaluate").first.click()
    if answer.value.status != 202:
        raise AssertionError(f"evaluation refused: {answer.value.text()}")
    page.wait_for_url(f"{base}/evaluations/eval-*/", timeout=30_000)
    with embedded_platform.http() as http:
        evaluation_id = page.url.rstrip("/").rsplit("/", 1)[-1]
        body = http.get(f"/evaluations/{evaluation_id}").json()
    # The first checkpoint of the job is what is being evaluated.
    # The API names it as the page sent it (job-001/step-50), never by its server folder, and so does
    # the evaluation page.
    assert body["job_id"] == job_id and body["model_path"] == f"{job_id}/step-50"
    assert page.text_content("#eval-model") == f"{job_id}/step-50"
    assert "checkpoint-50" not in page.text_content("main")
    page.goto(f"{base}/evaluations/")
    row = page.locator("#evaluations tr", has_text=evaluation_id)
    assert f"{job_id}/step-50" in row.text_content() and "checkpoint-50" not in row.text_content()
