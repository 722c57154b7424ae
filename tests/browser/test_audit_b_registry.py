"""Audit of issue 19's "Evaluations/registry" and "Everywhere" defects in the system Chromium: names not
server paths, kind labels not API names, the model card as HTML, stage labels in the history, one
timestamp format on every page, the favicon, and the styled 403/404 pages. Screenshots:
/tmp/auditB-shots/registry-*.png."""

from __future__ import annotations

# ruff: noqa: F811
import re
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

pytestmark = [pytest.mark.e2e, pytest.mark.browser, pytest.mark.django_db(transaction=True)]

SHOTS = Path("/tmp/auditB-shots")
# Any date or time written otherwise than the app's one format (YYYY-MM-DD HH:MM): ISO with a T,
# Django's default "Dec. 5, 2026, 10:04 p.m.", "5 December 2026" or a UTC offset (a log's HH:MM:SS
# prefix is a log's).
OTHER_DATES = re.compile(
    r"\d{4}-\d\d-\d\dT\d\d|\b(?:Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Oct|Nov|Dec)[a-z]*\.? \d{1,2}, \d{4}"
    r"|\d{1,2} (?:January|February|March|April|May|June|July|August|September|October|November|December) \d{4}"
    r"|\b[ap]\.m\.|\+00:00"
)


def _log_in(page, base: str, username: str) -> None:
    page.goto(base + "/login/")
    page.fill("input[name=username]", username)
    page.fill("input[name=password]", "pw-" + username)
    page.click("button[type=submit]")
    page.wait_for_url(base + "/")


def test_evaluation_and_registry_pages_in_the_browser(page, live_server, researcher, make_user, at_promote):
    from experiments.models import Evaluation

    SHOTS.mkdir(exist_ok=True)
    workflow, _step, version = at_promote
    job = version.job
    evaluation = Evaluation.objects.get(job=job)
    make_user("ann", role="evaluator")
    base = live_server.url
    page.set_viewport_size({"width": 1440, "height": 900})
    missing = []
    page.on("response", lambda r: missing.append(r.url) if r.status == 404 else None)
    _log_in(page, base, "rita")

    # Evaluations: names the caller knows, kinds as labels
    page.goto(base + "/evaluations/")
    listing = page.inner_text("main")
    assert job.final_model_path not in listing and "/tmp/" not in listing
    assert "evaluate_model" not in listing and "compare_models" not in listing
    assert "Model evaluation" in listing
    page.goto(f"{base}/evaluations/{evaluation.public_id}/")
    assert page.inner_text("#eval-model") == job.public_id
    assert "/" not in page.inner_text("#eval-kind") and "_" not in page.inner_text("#eval-kind")
    assert "/tmp/" not in page.inner_text("main")
    page.screenshot(path=str(SHOTS / "registry-evaluation.png"), full_page=True)

    # The version page: the card is HTML, stages are labels
    url = f"{base}/models/{version.model_id}/{version.version}/"
    page.goto(url)
    assert "evaluate_model" not in page.inner_text("main")  # the evaluate hint in words, no API name
    assert page.inner_text("#to-archived") == "Move to Archived"  # a stage's label, not its code
    card = page.locator("#model-card")
    assert card.locator("h1, h2").count() >= 2 and "## " not in card.inner_text()
    page.fill("#stage-form input[name=reason]", "try it")
    page.click("#to-staging")
    assert page.inner_text("#stage") == "Staging"
    history = page.inner_text("#history")
    assert "Staging" in history and "staging" not in history.replace("Staging", "")
    assert "none" not in history.split()
    registered = page.locator("#history tbody tr").first.locator("td")
    assert registered.nth(1).inner_text() == "—" and registered.nth(2).inner_text() == "Unstaged"
    page.screenshot(path=str(SHOTS / "registry-version.png"), full_page=True)

    # One timestamp format everywhere a person reads dates
    for path in (
        "/",
        "/evaluations/",
        f"/evaluations/{evaluation.public_id}/",
        "/models/",
        f"/models/{version.model_id}/",
        f"/models/{version.model_id}/{version.version}/",
        "/datasets/",
        f"/datasets/{job.config.dataset_version.dataset.public_id}/",
        f"/jobs/{job.public_id}/",
        "/experiments/",
        "/workflows/",
        f"/workflows/{workflow.public_id}/",
        "/human-eval/",
    ):
        page.goto(base + path)
        page.wait_for_load_state("networkidle")
        text = page.inner_text("body")
        assert not OTHER_DATES.search(text), (path, OTHER_DATES.findall(text)[:5])
        assert re.search(r"\d{4}-\d\d-\d\d \d\d:\d\d", text) or path in (
            "/human-eval/",
            f"/jobs/{job.public_id}/",
        ), path
    assert not [u for u in missing if "favicon" in u], missing
    assert page.request.get(base + "/favicon.ico").status == 200

    # Everywhere: the 404 is the app's page, not Django's debug page
    response = page.goto(base + "/no/such/page/")
    assert response.status == 404 and page.locator(".topbar").count() == 1
    assert "URLconf" not in page.inner_text("body")
    page.screenshot(path=str(SHOTS / "registry-404.png"))
