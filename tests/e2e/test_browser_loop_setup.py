"""The browser-only loop, set-up pages, in the system Chromium: a researcher sets up a human evaluation
with criterion descriptions and scale anchors; the evaluator sees them on the rating page."""

from __future__ import annotations

from pathlib import Path

import pytest

pytestmark = [pytest.mark.e2e, pytest.mark.browser]

SHOTS = Path("/tmp/shots")


def log_in(page, base: str, username: str) -> None:
    page.goto(base + "/login/")
    page.fill("input[name=username]", username)
    page.fill("input[name=password]", "pw-" + username)
    page.keyboard.press("Enter")
    page.wait_for_load_state("networkidle")


@pytest.fixture
def people(transactional_db, make_user, artifact_root):
    return make_user("rita"), make_user("ann", role="evaluator"), make_user("bob", role="evaluator")


def test_set_up_a_human_evaluation_and_rate_it_with_the_guides(page, browser, live_server, people):
    from experiments.human_eval.models import HumanEvalTask
    from experiments.human_eval.services import items_create

    SHOTS.mkdir(exist_ok=True)
    base = live_server.url
    page.set_viewport_size({"width": 1440, "height": 900})
    log_in(page, base, "rita")
    page.goto(base + "/human-eval/")
    page.click("#he-new-link")
    assert page.locator("input[name=model_b]").is_hidden()  # rating mode: one model
    page.select_option("#he-mode", "pairwise")
    assert page.locator("input[name=model_b]").is_visible()
    assert page.locator(".he-low").first.inner_text() == "A better means"
    page.select_option("#he-mode", "rating")
    page.fill("input[name=name]", "Support answers")
    page.fill("input[name=model_a]", "t4dm-tiny")
    page.fill("textarea[name=questions]", "What is T4DM?\nHow do I start a run?")
    rows = page.locator(".criteria-table tbody tr")
    rows.nth(0).locator("input[name=criterion_description]").fill("Every fact in the answer is right")
    rows.nth(0).locator("input[name=criterion_low]").fill("mostly wrong")
    rows.nth(0).locator("input[name=criterion_high]").fill("all correct")
    page.check("input[name=evaluators][value=ann]")
    page.screenshot(path=str(SHOTS / "human_eval_new.png"), full_page=True)
    page.click("#he-create")
    page.wait_for_url("**/human-eval/he-*/")
    assert "set up" in page.locator(".messages").inner_text()

    # the worker's generation step, with fixed answers (generation is tested on its own)
    task = HumanEvalTask.objects.get()
    items_create(task=task, outputs=[["T4DM is a fine-tuning platform.", "Click New training."]])

    rater = browser.new_page()
    log_in(rater, base, "ann")
    rater.goto(f"{base}/rate/{task.public_id}/")
    rater.wait_for_selector("#rate-item:not([hidden])")
    accuracy = rater.locator("fieldset[data-criterion=accuracy]")
    assert accuracy.locator(".guide").inner_text() == "Every fact in the answer is right"
    assert accuracy.locator(".anchors").inner_text().split("\n") == ["1 = mostly wrong", "5 = all correct"]
    assert rater.locator("fieldset[data-criterion=helpfulness] .guide").count() == 0
    rater.screenshot(path=str(SHOTS / "human_eval_rate_guides.png"), full_page=True)
