"""The runs table's saved views (issue 19, "What to build" 3): a named view keeps the filters, columns,
sort and grouping, per account on the server (another browser of the same account sees it, another
account does not); choosing it opens it again."""

from __future__ import annotations

from pathlib import Path

import pytest

pytestmark = [pytest.mark.e2e, pytest.mark.browser]

SHOTS = Path("/tmp/auditA-shots")


def test_save_and_open_a_view(page, live_server, transactional_db, demo_config):
    from experiments.models import TrainingJob

    TrainingJob.objects.create(owner=demo_config.owner, config=demo_config, experiment=demo_config.experiment)
    SHOTS.mkdir(exist_ok=True)
    base = live_server.url
    page.goto(base + "/login/")
    page.fill("input[name=username]", "rita")
    page.fill("input[name=password]", "pw-rita")
    page.keyboard.press("Enter")
    page.wait_for_load_state("networkidle")
    page.goto(base + "/experiments/?group=experiment&sort=-duration&hp=learning_rate&page=1")
    page.fill("#saved-view-name", "by duration")
    page.click("#saved-view-save")
    page.wait_for_function("document.querySelectorAll('#saved-view-list option').length === 2")
    from experiments.models import SavedRunsView

    saved = SavedRunsView.objects.get(owner=demo_config.owner, name="by duration")
    assert saved.query == "group=experiment&sort=-duration&hp=learning_rate"  # no page number
    # a fresh browser (no local storage) of the same account finds it
    other = page.context.browser.new_context()
    fresh = other.new_page()
    fresh.goto(base + "/login/")
    fresh.fill("input[name=username]", "rita")
    fresh.fill("input[name=password]", "pw-rita")
    fresh.keyboard.press("Enter")
    fresh.wait_for_load_state("networkidle")
    fresh.goto(base + "/experiments/")
    assert fresh.locator("#saved-view-list option").all_inner_texts() == ["choose a view…", "by duration"]
    other.close()
    page.goto(base + "/experiments/")
    assert page.locator("#saved-view-list option").all_inner_texts() == ["choose a view…", "by duration"]
    page.select_option("#saved-view-list", "by duration")
    page.wait_for_url("**/experiments/?group=experiment*")
    assert "sort=-duration" in page.url and "hp=learning_rate" in page.url and "page=" not in page.url
    assert page.locator("#runs tr.group-row").count() == 1
    assert page.locator("#saved-view-list").input_value() == "by duration"
    page.screenshot(path=str(SHOTS / "runs_saved_view.png"), full_page=True)
