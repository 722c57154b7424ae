"""The rating page in the system Chromium: an evaluator rates five items with the keyboard only, at
phone width, reloads mid-way and continues; a researcher's results page updates as ratings arrive."""

from __future__ import annotations

import pytest

from tests.e2e.test_job_page_browser import SCREENSHOTS

pytestmark = [pytest.mark.e2e, pytest.mark.browser]


@pytest.fixture
def rating_task(transactional_db, make_user, artifact_root):
    from experiments.human_eval.services import human_eval_setup, items_create

    researcher = make_user("rita")
    make_user("ann", role="evaluator")
    task = human_eval_setup(
        owner=researcher,
        model_path="t4dm-tiny",
        eval_questions=[f"Question {k}: what is **T4DM**?" for k in range(5)],
        evaluators=["ann"],
        name="Tiny model answers",
    )
    outputs = [
        [f"Answer {k}\n\n```python\nprint({k})\n```\n<script>window.pwned=1</script>" for k in range(5)]
    ]
    items_create(task=task, outputs=outputs)
    return task


def _log_in(page, base: str, username: str) -> None:
    page.goto(base + "/login/")
    page.fill("input[name=username]", username)
    page.fill("input[name=password]", "pw-" + username)
    page.keyboard.press("Enter")
    page.wait_for_load_state("networkidle")


def _progress(page) -> str:
    return page.locator("#rate-progress-text").inner_text()


def _rate_current(page, keys: str) -> None:
    current = page.locator("#rate").get_attribute("data-assignment")
    for key in keys:
        page.keyboard.press(key)
    page.keyboard.press("n")
    page.wait_for_function(
        f"document.getElementById('rate').dataset.assignment !== '{current}'", timeout=10_000
    )


def test_an_evaluator_rates_five_items_with_the_keyboard_and_resumes(page, browser, live_server, rating_task):
    base = live_server.url
    page.set_viewport_size({"width": 390, "height": 844})
    _log_in(page, base, "ann")
    assert page.url == base + "/rate/"
    page.goto(f"{base}/rate/{rating_task.public_id}/")
    page.wait_for_selector("#rate-item:not([hidden])")
    assert _progress(page) == "0 of 5 rated"
    assert page.locator("#rate-outputs pre code").count() == 1  # markdown code block rendered
    assert page.evaluate("window.pwned") is None  # raw HTML in an output never runs
    page.screenshot(path=str(SCREENSHOTS / "human_eval_rate_phone.png"), full_page=True)
    assert page.evaluate("document.documentElement.scrollWidth") <= 390  # no sideways scrolling

    _rate_current(page, "435")
    _rate_current(page, "524")
    assert _progress(page) == "2 of 5 rated"
    # Half-rate the third item; the draft autosaves; reload.
    third = page.locator("#rate").get_attribute("data-assignment")
    page.keyboard.press("3")
    page.wait_for_function("document.getElementById('rate-save').textContent === 'saved'", timeout=10_000)
    page.reload()
    page.wait_for_selector("#rate-item:not([hidden])")
    assert _progress(page) == "2 of 5 rated"
    assert page.locator("#rate").get_attribute("data-assignment") == third
    assert page.locator("fieldset[data-criterion=accuracy] input[value='3']").is_checked()
    page.screenshot(path=str(SCREENSHOTS / "human_eval_resumed.png"), full_page=True)
    page.keyboard.press("4")  # the highlighted criterion moved on to helpfulness
    page.keyboard.press("4")
    page.keyboard.press("n")
    page.wait_for_function(f"document.getElementById('rate').dataset.assignment !== '{third}'")

    # The researcher watches the results while the last two arrive.
    researcher = browser.new_page()
    _log_in(researcher, base, "rita")
    researcher.goto(f"{base}/human-eval/{rating_task.public_id}/")
    assert researcher.locator("#he-ratings").inner_text() == "3"

    _rate_current(page, "555")
    _rate_current(page, "111")
    page.wait_for_selector("#rate-done:not([hidden])")
    assert _progress(page) == "5 of 5 rated"

    researcher.wait_for_function("document.getElementById('he-ratings').textContent === '5'", timeout=15_000)
    accuracy = researcher.locator("#he-means tr[data-criterion=accuracy] td.mean").inner_text()
    assert accuracy == "3.60"  # 4, 5, 3, 5, 1
    researcher.screenshot(path=str(SCREENSHOTS / "human_eval_results.png"), full_page=True)

    from experiments.human_eval.models import HumanEvalRating

    assert sorted(r.scores["accuracy"] for r in HumanEvalRating.objects.all()) == [1, 3, 4, 5, 5]
