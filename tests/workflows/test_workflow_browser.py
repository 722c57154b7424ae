"""The demo workflow in the system Chromium: started from the dashboard, its pipeline turns green step
by step without a reload, and the result reads like the seed's example."""

from __future__ import annotations

import re

import pytest

from tests.e2e.test_job_page_browser import SCREENSHOTS, _log_in

pytestmark = [pytest.mark.e2e, pytest.mark.browser]

STEPS = ["prepare", "validate", "configure", "train", "evaluate", "version", "promote"]


def test_the_demo_workflow_started_from_the_dashboard_goes_green(page, embedded_platform):
    base = embedded_platform.base_url
    _log_in(page, base)
    errors = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))

    # when: the run command's first page starts the demo workflow
    page.click("#start-demo-workflow")
    page.wait_for_url(re.compile(rf"{re.escape(base)}/workflows/wf-\d+/"))

    # then: the page follows the steps live (no reload) until every one is green
    page.evaluate("window.__sameDocument = true")
    page.wait_for_function(
        "document.querySelector('#pipeline li[data-step=prepare]').dataset.status !== 'pending'",
        timeout=60_000,
    )
    page.wait_for_function(
        "[...document.querySelectorAll('#pipeline li')].every(li => li.dataset.status === 'succeeded')"
        " || document.getElementById('workflow-status').textContent === 'failed'",
        timeout=400_000,
    )
    page.screenshot(path=str(SCREENSHOTS / "workflow_demo.png"), full_page=True)
    assert page.evaluate("window.__sameDocument") is True
    assert page.text_content("#workflow-status") == "succeeded", page.text_content("#workflow-error")
    assert [li.get_attribute("data-status") for li in page.query_selector_all("#pipeline li")] == [
        "succeeded"
    ] * 7
    green = page.locator("#pipeline li[data-step=train]").evaluate(
        "el => getComputedStyle(el).borderTopColor"
    )
    assert green == "rgb(47, 158, 68)"  # --ok
    assert int(page.text_content("#result-samples")) > 0
    assert float(page.text_content("#result-final-loss")) > 0
    assert page.text_content("#result-best-checkpoint").startswith("step ")
    assert "vs base" in page.text_content("#result-evaluation")
    assert re.fullmatch(r"\d+\.\d+\.\d+", page.text_content("#result-version"))
    assert page.text_content("#live-state") == "finished: succeeded"
    assert page.get_attribute("#live-state", "data-transport") == "websocket"
    assert not errors, errors
