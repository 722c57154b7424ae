"""A workflow the deployment gate refuses shows 'blocked by gate' with the reason and a way to the
gate, in the system Chromium (screenshot in /tmp/shots)."""

from __future__ import annotations

# ruff: noqa: F811
from pathlib import Path

import pytest

from tests.browser.test_workflow_blocked_by_gate import at_promote  # noqa: F401
from tests.models_registry.conftest import (  # noqa: F401
    _no_compare_to_base,
    finished_evaluation,
    make_config,
    succeeded_job,
    trained_final,
)

pytestmark = [pytest.mark.e2e, pytest.mark.browser]


@pytest.mark.django_db(transaction=True)
def test_a_blocked_workflow_page(page, live_server, researcher, at_promote):
    from experiments.workflows.services import workflow_step_run

    workflow, step, version = at_promote
    workflow.steps.filter(name="version").update(
        output={"url": f"/models/{version.model_id}/{version.version}/"}
    )
    workflow_step_run(step_pk=step.pk)
    base = live_server.url
    page.goto(base + "/login/")
    page.fill("input[name=username]", "rita")
    page.fill("input[name=password]", "pw-rita")
    page.keyboard.press("Enter")
    page.wait_for_load_state("networkidle")
    page.goto(f"{base}/workflows/{workflow.public_id}/")
    page.wait_for_function("document.getElementById('workflow-status').textContent === 'blocked by gate'")
    assert (
        page.locator("#pipeline li[data-step=promote] [data-role=status]").inner_text() == "blocked by gate"
    )
    assert "Sample outputs reviewed" in page.locator("#workflow-error").inner_text()
    assert page.locator("#retry-workflow").inner_text() == "Check the gate again and promote"
    assert (
        page.locator("#gate-link").get_attribute("href") == f"/models/{version.model_id}/{version.version}/"
    )
    Path("/tmp/shots").mkdir(exist_ok=True)
    page.screenshot(path="/tmp/shots/workflow_blocked.png", full_page=True)
