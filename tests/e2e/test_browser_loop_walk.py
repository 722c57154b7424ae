"""The loop a browser-only user walks, in the system Chromium against `make run`'s processes (the ASGI
server and one worker), every step of issue 19's Acceptance: upload a dataset, clean and augment it,
start a named run in a named experiment with tags, watch it finish, compare it with another run by the
hyperparameter columns of the runs table, evaluate it, set up a human evaluation and rate it as an
evaluator, read the results, promote it with a second person's sign-off, export it, chat with it.
Screenshots: /tmp/shots/walk-*.png."""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

import pytest

from tests.conftest import DEMO_ROWS
from tests.platform import ADMIN_PASSWORD, Platform, _boot, _clean_env, free_port

pytestmark = [pytest.mark.e2e, pytest.mark.browser]

SHOTS = Path("/tmp/shots")


@pytest.fixture(scope="module")
def walk_platform(tmp_path_factory, tiny_model_dir):
    """`make run`'s processes, as tests/platform.py's embedded_platform, for a project whose quality
    thresholds a 2-epoch run of the tiny model can meet (T4DM_QUALITY_THRESHOLDS: the defaults ask
    perplexity <= 10, which t4dm-tiny does not reach in seconds)."""
    data = tmp_path_factory.mktemp("walk")
    port = free_port()
    env = {
        **_clean_env(),
        "T4DM_DATA_DIR": str(data),
        "T4DM_TINY_MODEL_DIR": str(tiny_model_dir),
        "T4DM_COMPARE_TO_BASE": "0",
        "T4DM_SERVER_URL": f"http://127.0.0.1:{port}",
        "T4DM_QUALITY_THRESHOLDS": json.dumps({"perplexity": {"<=": 1e9}}),
    }
    platform = _boot(Platform(base_url=f"http://127.0.0.1:{port}", env=env))
    platform.spawn(sys.executable, "manage.py", "t4dm_up", "--port", str(port), log=data / "t4dm_up.log")
    try:
        platform.wait_until_up()
        yield platform
    finally:
        platform.stop()


def _log_in(page, base: str, username: str, password: str) -> None:
    page.goto(base + "/login/")
    page.fill("input[name=username]", username)
    page.fill("input[name=password]", password)
    page.click("button[type=submit]")
    page.wait_for_url(base + "/")


def _shot(page, name: str) -> None:
    page.screenshot(path=str(SHOTS / f"walk-{name}.png"), full_page=True)


def test_a_browser_only_user_walks_the_whole_loop(page, browser, walk_platform, tmp_path):
    SHOTS.mkdir(exist_ok=True)
    base = walk_platform.base_url
    page.set_viewport_size({"width": 1440, "height": 900})
    # A second admin to sign off the production promotion (T4DM_PROMOTION_PEOPLE defaults to 2).
    walk_platform.manage(
        "shell",
        "-c",
        "from django.contrib.auth import get_user_model; from t4dm_site.services import role_assign; "
        "u = get_user_model().objects.create_user(username='walk-ada', password='pw-walk-ada'); "
        "role_assign(user=u, role='admin'); "
        "e = get_user_model().objects.create_user(username='walk-eve', password='pw-walk-eve'); "
        "role_assign(user=e, role='evaluator')",
    )
    _log_in(page, base, "admin", ADMIN_PASSWORD)

    # 1. upload a dataset (the demo rows plus one of its own, so that it is a new dataset)
    rows = DEMO_ROWS.read_text().splitlines()
    extra = {"messages": [{"role": "user", "content": "Who walks the loop?"}, {"role": "assistant", "content": "A browser-only user."}]}  # fmt: skip
    untidy = {"messages": [{"role": "user", "content": "Where   is   the   walk?"}, {"role": "assistant", "content": "In   the browser."}]}  # fmt: skip
    data = tmp_path / "walk-support.jsonl"
    data.write_text("\n".join([*rows, json.dumps(extra), json.dumps(untidy)]) + "\n")
    page.goto(base + "/datasets/")
    page.set_input_files("#upload-file", str(data))
    page.select_option("#upload-form select[name=task_type]", "chat")
    page.click("#upload-button")
    page.wait_for_url(re.compile(r".*/datasets/ds-\d+/$"), timeout=60_000)
    dataset_id = page.url.rstrip("/").rsplit("/", 1)[-1]
    _shot(page, "1-dataset")

    # 1b. clean it (v2 says what changed), then augment it on the worker (v3)
    page.click("#clean-button")
    page.wait_for_url(re.compile(r".*\?version=2$"), timeout=60_000)
    assert "What changed in v2" in page.inner_text("#what-changed > summary")
    page.click("#augment-button")
    page.wait_for_url(re.compile(r".*\?version=3$"), timeout=180_000)
    assert page.locator("#versions > table > tbody > tr").count() == 3
    _shot(page, "1b-augmented")

    # 2. configure and start a named run in a named experiment with tags
    page.goto(base + "/configs/new/")
    page.select_option("select[name=dataset_id]", dataset_id)
    page.fill("input[name=model_base]", "t4dm-tiny")
    for name, value in {"learning_rate": "0.003", "epochs": "2", "batch_size": "8", "lora_r": "8", "lora_alpha": "16"}.items():  # fmt: skip
        page.fill(f"input[name={name}]", value)
    page.fill("input[name=run_name]", "walk: lr 3e-3, two epochs")
    page.fill("input[name=run_tags]", "walk, first-try")
    page.fill("input[name=experiment_name]", "browser walk")
    page.fill("input[name=experiment_tags]", "loop")
    _shot(page, "2-form")
    page.click("#start-training")
    page.wait_for_url(re.compile(r".*/jobs/job-\d+/$"), timeout=30_000)
    job_id = page.url.rstrip("/").rsplit("/", 1)[-1]
    assert page.text_content("#run-name") == "walk: lr 3e-3, two epochs"
    assert page.locator("#run-tags .run-tag").all_inner_texts() == ["walk", "first-try"]

    # 3. watch it finish
    page.wait_for_function(
        "document.getElementById('job-status').textContent === 'succeeded'", timeout=300_000
    )
    page.wait_for_function("Number(document.getElementById('chart-loss').dataset.points) > 0")
    _shot(page, "3-job-done")

    # 3b. a second run in the same experiment with another learning rate (cancelled while queued)
    page.goto(base + "/configs/new/")
    page.select_option("select[name=dataset_id]", dataset_id)
    page.fill("input[name=model_base]", "t4dm-tiny")
    for name, value in {"learning_rate": "0.001", "epochs": "1", "batch_size": "8", "lora_r": "8", "lora_alpha": "16"}.items():  # fmt: skip
        page.fill(f"input[name={name}]", value)
    page.fill("input[name=run_name]", "walk: lr 1e-3")
    experiment = page.locator("#experiment-choice option", has_text="browser walk").get_attribute("value")
    page.select_option("#experiment-choice", experiment)  # the same experiment, picked by its name
    page.click("#start-training")
    page.wait_for_url(re.compile(r".*/jobs/job-\d+/$"), timeout=30_000)
    other_id = page.url.rstrip("/").rsplit("/", 1)[-1]
    page.click("#cancel-job")
    page.wait_for_function(
        "['cancelled', 'succeeded'].includes(document.getElementById('job-status').textContent)",
        timeout=60_000,
    )

    # 4. the runs table shows it under its experiment, with its name and both kinds of tag
    page.goto(base + "/experiments/?q=" + "two epochs")
    row = page.locator("#runs tbody tr", has_text=job_id)
    assert row.count() == 1
    text = row.inner_text()
    assert "walk: lr 3e-3, two epochs" in text and "browser walk" in text
    assert all(tag in text for tag in ("walk", "first-try", "loop"))
    _shot(page, "4-runs")

    # 4b. the experiment's runs side by side: the learning rate is a column, then Compare
    row.locator("a", has_text="browser walk").first.click()
    page.wait_for_load_state()
    assert page.locator("#runs th a[data-sort='hp.learning_rate']").count() == 1
    for run, rate in ((job_id, "0.003"), (other_id, "0.001")):
        assert page.locator("#runs tbody tr", has_text=run).locator("td.hp", has_text=rate).count() == 1
    _shot(page, "4b-experiment-runs")
    for run in (job_id, other_id):
        page.check(f"#runs input[name=jobs][value={run}]")
    page.click("#compare-selected")
    page.wait_for_url(re.compile(r".*/compare/.*"))
    learning_rate = page.locator("#compare-params tr[data-param=learning_rate]")
    assert learning_rate.get_attribute("class") == "differs"
    assert sorted(learning_rate.locator("td").all_inner_texts()) == ["0.001", "0.003"]
    _shot(page, "4c-compare")

    # 5. evaluate it from the browser
    page.goto(base + "/evaluations/new/")
    page.fill("input[name=model_path]", job_id)
    page.select_option("#eval-dataset", dataset_id)
    page.fill("input[name=max_samples]", "4")
    page.click("#eval-start")
    page.wait_for_url(re.compile(r".*/evaluations/eval-\d+/$"), timeout=30_000)
    assert page.text_content("#eval-model") == job_id
    assert page.text_content("#eval-base") == "t4dm-tiny"  # a name, not the worker's folder
    page.wait_for_function(
        "document.getElementById('eval-status').textContent === 'succeeded'", timeout=300_000
    )
    _shot(page, "5-evaluation")

    # 5b. a human evaluation of it, set up in the browser; an evaluator rates; the owner reads it
    page.goto(base + "/human-eval/")
    page.click("#he-new-link")
    page.fill("input[name=name]", "walk answers")
    page.fill("input[name=model_a]", job_id)
    page.fill("textarea[name=questions]", "Who walks the loop?\nWhere is the walk?")
    page.fill("input[name=max_new_tokens]", "16")
    page.check("input[name=evaluators][value=walk-eve]")
    page.click("#he-create")
    page.wait_for_url(re.compile(r".*/human-eval/he-\d+/$"), timeout=30_000)
    results_url = page.url
    task_id = results_url.rstrip("/").rsplit("/", 1)[-1]
    for _ in range(120):  # the worker generates the answers
        if page.text_content("#he-status") != "generating":
            break
        page.wait_for_timeout(2000)
        page.reload()
    assert page.text_content("#he-status") == "ready"
    rater = browser.new_page()
    rater.goto(base + "/login/")
    rater.fill("input[name=username]", "walk-eve")
    rater.fill("input[name=password]", "pw-walk-eve")
    rater.click("button[type=submit]")
    rater.wait_for_url(base + "/rate/")
    rater.click(f"a[href='/rate/{task_id}/']")
    rater.wait_for_selector("#rate-item:not([hidden])")
    for _ in range(2):
        current = rater.locator("#rate").get_attribute("data-assignment")
        for _criterion in range(rater.locator("#rate-criteria fieldset").count()):
            rater.keyboard.press("4")
        rater.keyboard.press("n")
        rater.wait_for_function(
            f"document.getElementById('rate').dataset.assignment !== '{current}'"
            " || !document.getElementById('rate-done').hidden"
        )
    rater.wait_for_selector("#rate-done:not([hidden])")
    rater.screenshot(path=str(SHOTS / "walk-5b-rated.png"), full_page=True)
    rater.close()
    page.goto(results_url)
    assert page.text_content("#he-ratings") == "2"
    assert page.locator("#he-means tbody tr").count() >= 1
    _shot(page, "5c-human-eval-results")

    # 6. the job became a model version: promote it, with a second person's sign-off
    page.goto(f"{base}/jobs/{job_id}/")
    page.locator("#checkpoints a", has_text="Promote").first.click()
    page.wait_for_url(re.compile(r".*/models/[^/]+/[^/]+/.*"))
    version_url = page.url
    card = page.inner_text("#model-card")
    assert "Not evaluated yet" not in card and "## " not in card  # the evaluation is on the card, as HTML
    page.fill("#stage-form input[name=reason]", "walk trial")
    page.click("#to-staging")
    assert page.text_content("#stage") == "Staging"
    page.fill("#signoff-form input[name=note]", "read the outputs")
    page.click("#signoff")
    page.fill("#stage-form input[name=reason]", "ship it")
    page.click("#to-production")
    assert "needs 2 different people" in page.text_content(".messages li.error")
    second = browser.new_page()
    _log_in(second, base, "walk-ada", "pw-walk-ada")
    second.goto(version_url)
    second.fill("#signoff-form input[name=note]", "agree")
    second.click("#signoff")
    second.close()
    page.reload()
    page.fill("#stage-form input[name=reason]", "ship it")
    page.click("#to-production")
    errors = page.locator(".messages li.error")
    assert page.text_content("#stage") == "Production", errors.all_inner_texts()
    promoted = page.locator("#history tbody tr").last
    assert promoted.locator("[data-role=four-eyes]").inner_text() == (
        "signed off by admin, walk-ada; promoted by admin"
    )  # the second sign-off is recorded with the promotion
    _shot(page, "6-promoted")

    # 6b. export it (merged) and download the archive
    page.click("#export-form button[type=submit]")
    page.wait_for_selector("#exports li[data-status=succeeded] a.download", timeout=240_000)
    with page.expect_download() as download:
        page.click("#exports li[data-status=succeeded] a.download")
    assert download.value.suggested_filename.endswith(".tar.gz")
    _shot(page, "6b-exported")

    # 7. chat with it in the playground
    page.click("#playground-link")
    page.wait_for_function("document.getElementById('ws-state').textContent === 'live'", timeout=20_000)
    page.fill("#message", "Who walks the loop?")
    page.fill("input[name=max_new_tokens]", "16")
    page.click("#send")
    page.wait_for_function(
        "document.querySelectorAll('.chat li.assistant[data-done=true]').length === 2", timeout=60_000
    )
    assert page.text_content("#chat-version li.assistant .text").strip()
    _shot(page, "7-playground")
