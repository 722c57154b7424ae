"""The overview's "Start a demo job" says at once that it is working (issue 19: the first click took
16 s with no feedback) and cannot be pressed twice."""

from __future__ import annotations

from pathlib import Path

import pytest

pytestmark = [pytest.mark.e2e, pytest.mark.browser]

SHOTS = Path("/tmp/auditA-shots")


def test_start_demo_shows_that_it_is_working(page, live_server, transactional_db, researcher):
    SHOTS.mkdir(exist_ok=True)
    base = live_server.url
    page.goto(base + "/login/")
    page.fill("input[name=username]", "rita")
    page.fill("input[name=password]", "pw-rita")
    page.keyboard.press("Enter")
    page.wait_for_load_state("networkidle")
    page.goto(base + "/")

    # What the page shows between the click and the answer (the submit event, without sending it yet)
    page.evaluate(
        "document.getElementById('start-demo').form.dispatchEvent(new SubmitEvent('submit', {cancelable: true}))"
    )
    assert page.locator("#demo-busy").is_visible()
    assert "Starting the demo job" in page.locator("#demo-busy").inner_text()
    assert page.locator("#start-demo").is_disabled() and page.locator("#start-demo-workflow").is_disabled()
    page.screenshot(path=str(SHOTS / "overview_demo_starting.png"))
    # (the click itself starting the job: tests/e2e/test_job_page_browser.py)
