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
        chat("Tell me about <b>this</b>", "An answer with leftover markup.", system="Be brief.")
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
    assert page.locator("#stats td").first.inner_text() == "61"
    assert page.locator("#issue-table code", has_text="html_markup").count() == 1
    assert page.locator(".message.assistant").count() == 20
    SCREENSHOTS.mkdir(exist_ok=True)
    page.screenshot(path=str(SCREENSHOTS / "dataset_page.png"), full_page=True)
    page.locator(".issue-link").first.click()
    page.wait_for_load_state()
    assert "#row-" in page.url and page.locator(page.url[page.url.index("#") :]).count() == 1
