"""The dataset pages in the system Chromium: upload with a progress bar, then statistics, histograms,
issues linked to rows and conversations in the preview."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from tests.datasets_app.conftest import chat, distinct_chat_rows, jsonl

pytestmark = [pytest.mark.e2e, pytest.mark.browser]

SCREENSHOTS = Path(__file__).resolve().parents[2] / "test-results"


def test_upload_in_the_browser_then_read_the_dataset_page(
    live_server, page, researcher, artifact_root, tmp_path
):
    rows = distinct_chat_rows(60) + [
        chat("Tell me about <b>this</b>", "An answer with leftover markup.", system="Be brief."),
        chat("Spaced   out  question", "An answer."),  # something for Clean to change (issue 19)
    ]
    data = tmp_path / "support-chats.jsonl"
    data.write_bytes(jsonl(rows))
    page.goto(live_server.url + "/login/")
    page.fill("input[name=username]", researcher.username)
    page.fill("input[name=password]", "pw-" + researcher.username)
    page.click("button[type=submit], input[type=submit]")
    page.goto(live_server.url + "/datasets/")
    page.set_input_files("#upload-file", str(data))
    page.click("#upload-button")
    page.wait_for_url(re.compile(r".*/datasets/ds-\d+/$"), timeout=60_000)
    assert page.locator("#upload-progress").count() == 0  # we left the upload page
    page.wait_for_selector("#chart-tokens .main-svg", timeout=30_000)
    assert "Token lengths" in page.locator("#chart-tokens .gtitle").text_content()
    assert page.locator("#stats td").first.inner_text() == "62"
    assert page.locator("#issue-table code", has_text="html_markup").count() == 1
    assert page.locator(".message.assistant").count() == 20
    SCREENSHOTS.mkdir(exist_ok=True)
    page.screenshot(path=str(SCREENSHOTS / "dataset_page.png"), full_page=True)
    page.locator(".issue-link").first.click()
    page.wait_for_load_state()
    assert "#row-" in page.url and page.locator(page.url[page.url.index("#") :]).count() == 1

    # A new version from the page: Clean answers at once and opens v2, which says what changed.
    page.goto(page.url.split("#")[0].split("?")[0])
    page.click("#clean-button")
    page.wait_for_url(re.compile(r".*\?version=2$"), timeout=60_000)
    assert page.locator("#versions > table > tbody > tr").count() == 2
    assert "What changed in v2" in page.locator("#what-changed > summary").inner_text()
    # A model-based method with no model configured is refused at once, with the reason.
    page.uncheck("input[name=methods][value=template_paraphrase]")
    page.check("input[name=methods][value=paraphrase]")
    page.click("#augment-button")
    page.wait_for_selector("#action-error:not([hidden])", timeout=30_000)
    assert "paraphrase needs a text2text-generation model" in page.inner_text("#action-error")
    assert page.is_enabled("#augment-button")  # the form can be used again
    page.screenshot(path=str(SCREENSHOTS / "dataset_page_actions.png"), full_page=True)


def test_augment_from_the_page_runs_on_the_worker_and_opens_the_new_version(page, embedded_platform):
    from tests.conftest import DEMO_ROWS
    from tests.platform import ADMIN_PASSWORD

    base = embedded_platform.base_url
    # Content of its own: an upload of the same bytes by the same owner returns the same dataset, and
    # other tests on this shared platform train on DEMO_ROWS' dataset (its latest version).
    content = (
        DEMO_ROWS.read_bytes().rstrip(b"\n") + b"\n" + jsonl([chat("Which page augments?", "This one.")])
    )
    with embedded_platform.http() as http:
        made = http.post(
            "/datasets", files={"file": ("augment-me.jsonl", content)}, data={"task_type": "chat"}
        )
        assert made.status_code == 201, made.text
        dataset_id = made.json()["dataset_id"]
    page.goto(base + "/login/")
    page.fill("input[name=username]", "admin")
    page.fill("input[name=password]", ADMIN_PASSWORD)
    page.click("button[type=submit]")
    page.wait_for_url(base + "/")
    page.goto(f"{base}/datasets/{dataset_id}/")
    page.fill("input[name=copies_per_row]", "2")
    page.click("#augment-button")  # template_paraphrase, the first method, is checked
    page.wait_for_url(re.compile(r".*\?version=2$"), timeout=120_000)
    with embedded_platform.http() as http:
        versions = http.get(f"/datasets/{dataset_id}/versions").json()
    samples = {v["version"]: v["statistics"]["total_samples"] for v in versions}
    assert samples[2] > samples[1]  # the augmented rows were added
    assert page.locator("#versions > table > tbody > tr").count() == 2
    assert "augment" in page.locator("#versions > table > tbody > tr.best").inner_text().lower()
