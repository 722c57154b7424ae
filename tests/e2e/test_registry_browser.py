"""The registry in the system Chromium: promote a version through the UI, see the gate refuse it with
the failing items, fix them, promote, and see the stage history."""

from __future__ import annotations

# ruff: noqa: F811
import re
from pathlib import Path

import pytest

# The registry's fixtures, used here as pytest fixtures (hence the arguments that shadow them).
from tests.models_registry.conftest import (  # noqa: F401
    _no_compare_to_base,
    finished_evaluation,
    make_config,
    succeeded_job,
    trained_final,
)
from tests.platform import ADMIN_PASSWORD

pytestmark = [pytest.mark.e2e, pytest.mark.browser]

CHROMIUM = "/usr/bin/chromium"
SCREENSHOTS = Path(__file__).resolve().parents[2] / "test-results"


@pytest.mark.django_db(transaction=True)
def test_promote_through_the_ui_sees_gate_and_history(
    page, live_server, researcher, make_user, make_config, succeeded_job, finished_evaluation
):
    from models_registry.services import model_version_auto_create, registered_model_update

    # given: a trained, versioned model with a finished evaluation against thresholds
    job = succeeded_job(make_config())
    version = model_version_auto_create(job=job)
    finished_evaluation(job)
    registered_model_update(model_id=version.model_id, thresholds={"accuracy": 0.9, "perplexity": 10})
    base = live_server.url
    SCREENSHOTS.mkdir(exist_ok=True)

    page.goto(base + "/login/")
    page.fill("input[name=username]", "rita")
    page.fill("input[name=password]", "pw-rita")
    page.click("button[type=submit]")
    page.wait_for_url(base + "/")
    page.click("nav >> text=Models")
    page.click("#models >> text=t4dm-knowledge")
    page.click("#versions >> text=1.0.0")
    assert page.text_content("#stage") == "Unstaged"

    # when: staging, then production before anyone reviewed the sample outputs
    page.fill("#stage-form input[name=reason]", "team trial")
    page.click("#to-staging")
    assert page.text_content("#stage") == "Staging"
    page.click("#to-production")

    # then: refused, with exactly the failing item, and the gate shows it
    message = page.text_content(".messages li.error")
    assert message.strip() == "Promotion to production refused. Failing checks: Sample outputs reviewed."
    assert page.get_attribute("#gate li[data-key=sample_outputs_reviewed]", "data-passed") == "false"
    assert page.locator("#gate li[data-passed=false]").count() == 1
    assert page.text_content("#stage") == "Staging"
    page.screenshot(path=str(SCREENSHOTS / "registry_gate_refused.png"), full_page=True)

    # when: sign off the sample outputs, then promote
    page.fill("#signoff-form input[name=note]", "read 12 outputs; all correct")
    page.click("#signoff")
    assert page.locator("#gate li[data-passed=false]").count() == 0
    page.fill("#stage-form input[name=reason]", "gate passes; ship it")
    page.click("#to-production")

    # then: the reviewer cannot promote alone (settings.PROMOTION_PEOPLE = 2)
    assert "needs 2 different people" in page.text_content(".messages li.error")
    assert page.text_content("#stage") == "Staging"

    # when: a second person (an admin, who sees every owner's models) signs off too; rita promotes
    make_user("ada", role="admin")
    second = page.context.browser.new_page()
    second.goto(base + "/login/")
    second.fill("input[name=username]", "ada")
    second.fill("input[name=password]", "pw-ada")
    second.click("button[type=submit]")
    second.goto(f"{base}/models/{version.model_id}/{version.version}/?owner=rita")
    second.fill("#signoff-form input[name=note]", "agree with rita")
    second.click("#signoff")
    second.close()
    page.reload()
    page.fill("#stage-form input[name=reason]", "gate passes; ship it")
    page.click("#to-production")

    # then: production, and the history tells who moved it, from where, to where and why
    assert page.text_content("#stage") == "Production"
    rows = [re.sub(r"\s+", " ", r).strip() for r in page.locator("#history tbody tr").all_inner_texts()]
    assert len(rows) == 3
    assert "Unstaged Staging rita team trial" in rows[1]
    assert "Staging Production rita gate passes; ship it passed" in rows[2]
    page.screenshot(path=str(SCREENSHOTS / "registry_promoted.png"), full_page=True)


def test_playground_streams_both_sides_in_the_browser(page, embedded_platform):
    """Against the real ASGI server (websockets): a trained job registered as a version, then chatted with."""
    import time

    from tests.e2e.test_training_live import HYPERPARAMS, start_job

    base = embedded_platform.base_url
    job_id = start_job(embedded_platform, hyperparams={**HYPERPARAMS, "epochs": 2})
    with embedded_platform.http() as http:
        deadline = time.monotonic() + 180
        while http.get(f"/jobs/{job_id}").json()["status"] != "succeeded":
            assert time.monotonic() < deadline, "the job did not succeed in time"
            time.sleep(0.5)
        created = http.post("/models/versions", json={"job_id": job_id, "model_id": "t4dm-playground"})
        assert created.status_code == 201, created.text
        version = created.json()["version"]

    page.goto(base + "/login/")
    page.fill("input[name=username]", "admin")
    page.fill("input[name=password]", ADMIN_PASSWORD)
    page.click("button[type=submit]")
    page.wait_for_url(base + "/")
    page.goto(f"{base}/models/t4dm-playground/{version}/")
    page.click("#playground-link")
    page.wait_for_function("document.getElementById('ws-state').textContent === 'live'", timeout=20_000)
    page.fill("#message", "What does T4DM stand for?")
    page.fill("input[name=max_new_tokens]", "24")
    page.click("#send")
    page.wait_for_function(
        "document.querySelectorAll('.chat li.assistant[data-done=true]').length === 2", timeout=60_000
    )
    for side in ("version", "base"):
        meta = page.text_content(f"#chat-{side} li.assistant .meta")
        assert "24 tokens" in meta
        assert page.text_content(f"#chat-{side} li.assistant .text").strip()
    SCREENSHOTS.mkdir(exist_ok=True)
    page.screenshot(path=str(SCREENSHOTS / "registry_playground.png"), full_page=True)
