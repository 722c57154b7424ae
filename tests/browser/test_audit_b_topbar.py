"""Issue 19 "Everywhere": the top bar looks the same on every page. The human-eval pages' stylesheet has
its own `button.link` (blue, underlined, no padding), which turned the top bar's "Log out" into a blue
link glued to "Admin" on the rating and results pages."""

from __future__ import annotations

from pathlib import Path

import pytest

pytestmark = [pytest.mark.e2e, pytest.mark.browser]

SHOTS = Path("/tmp/auditB-shots")


def _log_in(page, base: str, username: str) -> None:
    page.goto(base + "/login/")
    page.fill("input[name=username]", username)
    page.fill("input[name=password]", "pw-" + username)
    page.click("button[type=submit]")
    page.wait_for_load_state("networkidle")


def _logout_style(page) -> dict:
    return page.locator(".topbar button.link").evaluate(
        "b => { const s = getComputedStyle(b); return {padding: s.paddingLeft, color: s.color, line: s.textDecorationLine}; }"
    )


def test_the_top_bar_log_out_is_the_same_on_the_human_eval_pages(page, live_server, make_user, artifact_root):
    from experiments.human_eval.services import human_eval_setup, items_create

    SHOTS.mkdir(exist_ok=True)
    rita = make_user("rita")
    make_user("ann", role="evaluator")
    task = human_eval_setup(owner=rita, model_path="t4dm-tiny", eval_questions=["What is T4DM?"],
                            evaluators=["ann"], name="Top bar")  # fmt: skip
    items_create(task=task, outputs=[["A fine-tuning platform."]])
    base = live_server.url
    page.set_viewport_size({"width": 1440, "height": 900})
    _log_in(page, base, "rita")
    page.goto(base + "/experiments/")
    expected = _logout_style(page)
    assert expected["padding"] == "16px" and expected["line"] == "none"
    page.goto(f"{base}/human-eval/{task.public_id}/")
    assert _logout_style(page) == expected
    page.screenshot(path=str(SHOTS / "topbar-results.png"))
    rater = page.context.browser.new_page()
    _log_in(rater, base, "ann")
    rater.goto(f"{base}/rate/{task.public_id}/")
    assert _logout_style(rater) == expected
