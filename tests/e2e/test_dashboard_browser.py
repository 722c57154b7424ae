"""The dashboard in the system Chromium: compare highlights what differs, chart controls work, the
config form starts a run, evaluators are refused, and pages fit a phone-width screen."""

from __future__ import annotations

import pytest

from tests.e2e.test_job_page_browser import SCREENSHOTS, _log_in
from tests.e2e.test_training_live import HYPERPARAMS, start_job
from tests.platform import ADMIN_PASSWORD

pytestmark = [pytest.mark.e2e, pytest.mark.browser]

EVALUATOR_PASSWORD = "e2e-evaluator-password"


def _wait_finished(page, base: str, job_id: str) -> None:
    page.goto(f"{base}/jobs/{job_id}/")
    page.wait_for_function(
        "['succeeded', 'failed'].includes(document.getElementById('job-status').textContent)", timeout=180_000
    )


def test_the_compare_page_highlights_the_differing_parameter(page, embedded_platform):
    base = embedded_platform.base_url
    _log_in(page, base)
    first = start_job(embedded_platform, hyperparams={**HYPERPARAMS, "epochs": 3})
    second = start_job(embedded_platform, hyperparams={**HYPERPARAMS, "epochs": 3, "learning_rate": 1e-3})
    _wait_finished(page, base, first)
    _wait_finished(page, base, second)

    # Pick the two runs on the list page, as a person would.
    page.goto(base + "/experiments/")
    page.check(f"input[name=jobs][value={first}]")
    page.check(f"input[name=jobs][value={second}]")
    page.click("#compare-selected")
    page.wait_for_url(f"{base}/experiments/compare/*")

    row = page.locator("#compare-params tr[data-param=learning_rate]")
    assert "differs" in row.get_attribute("class")
    assert row.evaluate("el => getComputedStyle(el).backgroundColor") != "rgba(0, 0, 0, 0)"
    assert "same" in page.locator("#compare-params tr[data-param=batch_size]").get_attribute("class")
    # Overlaid curves: one loss trace per run.
    page.wait_for_function(
        "document.getElementById('compare-chart-loss') && document.getElementById('compare-chart-loss').dataset.traces === '2'",
        timeout=30_000,
    )
    page.screenshot(path=str(SCREENSHOTS / "compare.png"), full_page=True)
    page.check("#only-diff")
    assert page.locator("#compare-params tr[data-param=batch_size]").is_hidden()


def test_chart_controls_smooth_rescale_and_switch_the_x_axis(page, embedded_platform):
    base = embedded_platform.base_url
    _log_in(page, base)
    job_id = start_job(embedded_platform, hyperparams={**HYPERPARAMS, "epochs": 3})
    _wait_finished(page, base, job_id)
    page.wait_for_function("Number(document.getElementById('chart-loss').dataset.points) > 0", timeout=30_000)
    names = "document.getElementById('chart-loss').data.map(t => t.name)"
    assert not any(n.endswith("(smoothed)") for n in page.evaluate(names))

    errors = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.fill("#smoothing", "0.8")  # a range input takes fill(); it fires input
    # Each series: a faded raw trace plus its smoothed trace.
    page.wait_for_function(f"{names}.some(n => n === 'loss (smoothed)')", timeout=5_000)
    shown = page.evaluate(names)
    assert shown.count("loss") == 1 and shown.count("loss (smoothed)") == 1
    assert page.text_content("#smoothing-value") == "0.80"
    page.check("#log-scale")
    page.wait_for_function("document.getElementById('chart-loss').layout.yaxis.type === 'log'")
    page.select_option("#x-axis", "time")
    page.wait_for_function("document.getElementById('chart-loss').layout.xaxis.type === 'date'")
    assert not errors, errors
    page.screenshot(path=str(SCREENSHOTS / "job_page_controls.png"), full_page=True)


def test_the_config_form_estimates_and_starts_a_run(page, embedded_platform):
    base = embedded_platform.base_url
    _log_in(page, base)
    start_job(embedded_platform, hyperparams={**HYPERPARAMS, "epochs": 1})  # makes sure a dataset exists
    page.goto(base + "/configs/new/")
    page.wait_for_function("document.getElementById('est-gpu_memory').textContent !== '—'", timeout=60_000)
    page.fill("input[name=learning_rate]", "-1")
    page.wait_for_selector("#form-error:not([hidden])")
    assert "Learning rate" in page.text_content("#form-error")
    page.fill("input[name=learning_rate]", "0.003")
    page.fill("input[name=epochs]", "1")
    page.fill("input[name=batch_size]", "8")
    page.wait_for_selector("#form-error", state="hidden")
    page.screenshot(path=str(SCREENSHOTS / "config_form.png"), full_page=True)
    page.click("#start-training")
    page.wait_for_url(f"{base}/jobs/job-*/", timeout=30_000)
    page.wait_for_function(
        "['queued', 'running', 'succeeded'].includes(document.getElementById('job-status').textContent)"
    )


def test_an_evaluator_is_refused_the_dashboard(page, embedded_platform):
    base = embedded_platform.base_url
    embedded_platform.manage(
        "shell",
        "-c",
        "from django.contrib.auth import get_user_model;"
        "from t4dm_site.services import role_assign;"
        "u, _ = get_user_model().objects.get_or_create(username='eve');"
        f"u.set_password('{EVALUATOR_PASSWORD}'); u.save(); role_assign(user=u, role='evaluator')",
    )
    page.goto(base + "/login/")
    page.fill("input[name=username]", "eve")
    page.fill("input[name=password]", EVALUATOR_PASSWORD)
    page.click("button[type=submit]")
    page.wait_for_url(base + "/rate/")
    assert "rating queue" in page.text_content("h1").lower()
    assert page.locator("nav >> text=Experiments").count() == 0
    page.screenshot(path=str(SCREENSHOTS / "evaluator_rating_queue.png"), full_page=True)
    for url in ("/experiments/", "/configs/new/", "/jobs/job-001/"):
        response = page.goto(base + url)
        assert response.status == 403, url


def test_pages_fit_a_phone_width_screen(browser, embedded_platform):
    base = embedded_platform.base_url
    context = browser.new_context(viewport={"width": 390, "height": 844})
    page = context.new_page()
    page.goto(base + "/login/")
    page.fill("input[name=username]", "admin")
    page.fill("input[name=password]", ADMIN_PASSWORD)
    page.click("button[type=submit]")
    page.wait_for_url(base + "/")
    for name, url in (("overview", "/"), ("experiments", "/experiments/"), ("config_form", "/configs/new/")):
        page.goto(base + url)
        # Nothing wider than the screen except inside the tables' own scroll boxes.
        overflow = page.evaluate("document.documentElement.scrollWidth - window.innerWidth")
        assert overflow <= 1, f"{url} overflows a 390 px screen by {overflow} px"
        page.screenshot(path=str(SCREENSHOTS / f"phone_{name}.png"), full_page=True)
    context.close()
