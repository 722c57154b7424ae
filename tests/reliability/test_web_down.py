"""The web server is stopped for 30 s mid-training: the worker's reporter buffers and retries, the
job is not declared lost, and after the restart every step is recorded exactly once; the job page
open in a browser reconnects by itself (?after=<last id>) and its chart fills in without a reload."""

from __future__ import annotations

import time

import pytest

from tests.e2e.test_training_live import HYPERPARAMS, start_job
from tests.platform import ADMIN_PASSWORD

pytestmark = [pytest.mark.e2e, pytest.mark.faults, pytest.mark.browser]

MAX_STEPS = 160
DOWN_S = 30

LOSS_STEPS_JS = """() => {
  const gd = document.getElementById('chart-loss');
  const trace = (gd.data || []).find((t) => t.name === 'loss');
  return trace ? Array.from(trace.customdata || trace.x) : [];
}"""


def test_thirty_seconds_without_the_web_server_lose_no_point(page, fault_platform, record_property):
    platform = fault_platform
    platform.start_web()
    platform.start_worker()
    base = platform.base_url
    page.goto(base + "/login/")
    page.fill("input[name=username]", "admin")
    page.fill("input[name=password]", ADMIN_PASSWORD)
    page.click("button[type=submit]")
    page.wait_for_url(base + "/")

    job_id = start_job(
        platform,
        hyperparams={**HYPERPARAMS, "max_steps": MAX_STEPS, "batch_size": 4},
        checkpointing={"save_steps": 20, "save_total_limit": 2},
    )
    page.goto(f"{base}/jobs/{job_id}/")
    page.wait_for_function("document.getElementById('ws-state').textContent === 'live'", timeout=30_000)
    platform.wait_for(
        job_id, lambda r: r["status"] == "running" and r["step"] >= 5, timeout=180, what="step 5"
    )

    platform.stop_web()
    down_at_step = platform.job_row(job_id)["step"]
    page.wait_for_function(
        "document.getElementById('ws-state').textContent === 'reconnecting…'", timeout=10_000
    )
    on_chart_when_down = len(page.evaluate(LOSS_STEPS_JS))
    time.sleep(DOWN_S)
    platform.start_web()
    restarted = time.monotonic()

    row = platform.wait_for(
        job_id, lambda r: r["status"] in ("succeeded", "failed"), timeout=300, what="the end"
    )
    assert row["status"] == "succeeded" and row["lost_count"] == 0, (row, platform.events(job_id))
    with platform.http() as http:
        series = http.get(f"/jobs/{job_id}/metrics").json()["series"]
    for key in ("loss", "learning_rate", "grad_norm"):
        assert [r[0] for r in series[key]] == list(range(1, MAX_STEPS + 1)), (
            f"{key}: missing or doubled steps"
        )

    # The page that stayed open caught up by itself: the chart's loss trace has every step, once.
    page.wait_for_function(f"({LOSS_STEPS_JS})().length === {MAX_STEPS}", timeout=60_000)
    assert page.evaluate(LOSS_STEPS_JS) == list(range(1, MAX_STEPS + 1))
    # The socket came back and followed the job to its end: a finished job's page says so.
    assert page.text_content("#ws-state") == "finished"
    assert page.text_content("#job-status") == "succeeded"
    caught_up = time.monotonic() - restarted
    record_property("down_at_step", down_at_step)
    print(
        f"\nweb down {DOWN_S} s from step {down_at_step} (chart had {on_chart_when_down} loss points); "
        f"job finished and chart complete {caught_up:.1f} s after the restart"
    )
