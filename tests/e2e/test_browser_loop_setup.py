"""The browser-only loop, set-up pages, in the system Chromium: a researcher sets up a human evaluation
with criterion descriptions and scale anchors; the evaluator sees them on the rating page."""

from __future__ import annotations

from pathlib import Path

import pytest
from playwright.sync_api import expect

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
    page.wait_for_url("**/human-eval/new/")
    expect(page.locator("input[name=model_b]")).to_be_hidden()  # rating mode: one model
    page.select_option("#he-mode", "pairwise")
    expect(page.locator("input[name=model_b]")).to_be_visible()
    expect(page.locator(".he-low").first).to_have_text("A better means")
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
    assert (
        accuracy.locator(".scale .anchor.low").inner_text() == "1 = mostly wrong"
    )  # beside the scale (9da70f0)
    assert accuracy.locator(".scale .anchor.high").inner_text() == "5 = all correct"
    assert rater.locator("fieldset[data-criterion=helpfulness] .guide").count() == 0
    rater.screenshot(path=str(SHOTS / "human_eval_rate_guides.png"), full_page=True)


def test_pages_everyone_sees_at_1440(page, browser, live_server, transactional_db, make_user, demo_config):
    """The overview's workers table fits at 1440 px and its ids are links; the 403, 404, evaluation
    set-up and webhooks pages are styled pages of the app."""
    from experiments.models import Worker

    make_user("ann", role="evaluator")
    Worker.objects.create(name="celery@gpu-node-0042.cluster.example.internal-training-worker-7",
                          queue="training,datasets,gpu-h200-large", hostname="gpu-node-0042", status="idle",
                          gpu_name="NVIDIA H200", gpu_count=8, gpu_memory_total_mb=143771,
                          gpu_memory_free_mb=120000)  # fmt: skip
    base = live_server.url
    page.set_viewport_size({"width": 1440, "height": 900})
    log_in(page, base, "rita")
    page.goto(base + "/")
    scroller = page.locator("#workers .table-scroll")
    assert scroller.evaluate("el => el.scrollWidth <= el.clientWidth")  # nothing cut off or scrolled
    dataset = demo_config.dataset_version.dataset.public_id
    assert page.locator(f"a[href='/datasets/{dataset}/']").count() >= 1
    page.screenshot(path=str(SHOTS / "overview_1440.png"), full_page=True)
    assert page.locator("nav >> text=Evaluations").count() == 1

    page.goto(base + "/evaluations/new/")
    page.select_option("#eval-dataset", dataset)
    assert page.locator("#eval-metrics label[data-tasks='classification']").first.is_hidden()
    assert page.locator("#eval-metrics input[value=rouge]").is_visible()
    page.screenshot(path=str(SHOTS / "evaluation_new.png"), full_page=True)

    response = page.goto(base + "/no/such/page/")
    assert response.status == 404 and page.locator(".topbar").count() == 1
    page.screenshot(path=str(SHOTS / "not_found.png"))

    make_user("ada", role="admin")
    admin = browser.new_page()
    log_in(admin, base, "ada")
    admin.goto(base + "/settings/webhooks/")
    admin.fill("input[name=url]", "https://hooks.example.org/t4dm")
    admin.check("input[name=event_types][value='job.succeeded']")
    admin.click("#webhook-add")
    assert "signing secret" in admin.locator(".messages").inner_text()
    assert admin.locator("#webhook-subscriptions tbody tr").count() == 1
    admin.screenshot(path=str(SHOTS / "webhooks.png"), full_page=True)

    evaluator = browser.new_page()
    log_in(evaluator, base, "ann")
    response = evaluator.goto(base + "/experiments/")
    assert response.status == 403
    assert evaluator.locator("#error-page a").inner_text() == "Go to your rating queue"
    assert evaluator.locator("nav >> text=Rate").count() == 1
    evaluator.screenshot(path=str(SHOTS / "forbidden_evaluator.png"))
