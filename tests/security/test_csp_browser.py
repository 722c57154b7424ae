"""Issue 17 item 13, in the system Chromium against the embedded platform: the dashboard, a job page
(live over its websocket), the runs list, compare, the config form, the registry and the API docs
work under the Content-Security-Policy, with no violation reported (tests/conftest.py fails a browser
test on any) and no script error. The rating page is covered by tests/e2e/test_human_eval_browser.py."""

from __future__ import annotations

import httpx
import pytest

from tests.conftest import DEMO_ROWS
from tests.e2e.test_job_page_browser import _log_in
from tests.e2e.test_training_live import HYPERPARAMS

pytestmark = [pytest.mark.e2e, pytest.mark.browser]


def _start_job(platform) -> str:
    """A two-epoch job over the demo rows (generous timeouts: this machine's cores are shared)."""
    headers = {"Authorization": f"Bearer {platform.token}"}
    with httpx.Client(base_url=platform.base_url + "/api/v1", headers=headers, timeout=180) as http:
        dataset = http.post(
            "/datasets", files={"file": ("kb.jsonl", DEMO_ROWS.read_bytes())}, data={"task_type": "chat"}
        )
        assert dataset.status_code == 201, dataset.text
        config = http.post(
            "/configs",
            json={"model_base": "t4dm-tiny", "dataset_id": dataset.json()["dataset_id"],
                  "hyperparams": {**HYPERPARAMS, "epochs": 2}},
        )  # fmt: skip
        assert config.status_code == 201, config.text
        job = http.post("/jobs", json={"config_id": config.json()["config_id"]})
        assert job.status_code == 201, job.text
        return job.json()["job_id"]


def test_pages_work_under_the_csp(page, embedded_platform):
    base = embedded_platform.base_url
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    _log_in(page, base)
    job_id, other_id = _start_job(embedded_platform), _start_job(embedded_platform)

    # the CSP is on the pages
    response = page.goto(base + "/")
    assert "script-src 'self'" in response.headers["content-security-policy"]

    # job page: plotly draws and the websocket (connect-src 'self') goes live
    page.goto(f"{base}/jobs/{job_id}/")
    page.wait_for_function("document.getElementById('ws-state').textContent === 'live'", timeout=60_000)
    page.wait_for_function(
        "document.getElementById('job-status').textContent === 'succeeded'", timeout=300_000
    )
    page.wait_for_function("Number(document.getElementById('chart-loss').dataset.points) > 0", timeout=30_000)

    # runs list: its sort links are set up by static/js/experiments_list.js (was an inline script)
    page.goto(base + "/experiments/")
    page.wait_for_function("document.querySelector('#runs a[aria-sort]') !== null", timeout=10_000)

    # compare (once the second run is done too)
    page.goto(f"{base}/jobs/{other_id}/")
    page.wait_for_function(
        "document.getElementById('job-status').textContent === 'succeeded'", timeout=300_000
    )
    page.goto(f"{base}/experiments/compare/?jobs={job_id},{other_id}")
    page.wait_for_function(
        "document.getElementById('compare-chart-loss') && document.getElementById('compare-chart-loss').dataset.traces === '2'",
        timeout=30_000,
    )

    # config form: the estimate comes back from the API
    page.goto(base + "/configs/new/")
    page.wait_for_function("document.getElementById('est-gpu_memory').textContent !== '—'", timeout=60_000)

    # registry and datasets
    for path in ("/models/", "/datasets/", "/evaluations/", "/workflows/"):
        page.goto(base + path)
        page.wait_for_load_state("load")

    # API docs: Swagger UI from this site's static files renders the schema
    for docs in ("/api/v1/docs", "/v1/docs", "/api/2.0/mlflow/docs"):
        page.goto(base + docs)
        page.wait_for_selector(".swagger-ui .info .title", timeout=30_000)
        assert page.locator(".swagger-ui .opblock").count() > 0

    assert not errors, errors
