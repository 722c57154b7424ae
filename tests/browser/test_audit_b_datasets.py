"""Audit of issue 19's "Datasets" defects in the system Chromium, as a person meets them on the pages:
format from the file extension, re-uploading the same bytes under a new name, a Clean that changes
nothing, "What changed" as tables, the preview paged both ways and searched. Screenshots:
/tmp/auditB-shots/datasets-*.png."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from tests.datasets_app.conftest import chat, distinct_chat_rows, jsonl

pytestmark = [pytest.mark.e2e, pytest.mark.browser]

SHOTS = Path("/tmp/auditB-shots")


def _log_in(page, base: str, username: str) -> None:
    page.goto(base + "/login/")
    page.fill("input[name=username]", username)
    page.fill("input[name=password]", "pw-" + username)
    page.click("button[type=submit]")
    page.wait_for_url(base + "/")


def _upload(page, base: str, path: Path, task_type: str) -> str:
    page.goto(base + "/datasets/")
    page.set_input_files("#upload-file", str(path))
    page.select_option("#upload-form select[name=task_type]", task_type)
    page.click("#upload-button")
    page.wait_for_url(re.compile(r".*/datasets/ds-\d+/$"), timeout=60_000)
    return page.url.rstrip("/").rsplit("/", 1)[-1]


def test_the_dataset_pages_in_the_browser(live_server, page, researcher, artifact_root, tmp_path):
    SHOTS.mkdir(exist_ok=True)
    base = live_server.url
    page.set_viewport_size({"width": 1440, "height": 900})
    _log_in(page, base, researcher.username)

    # Format from the extension: a .csv is read as CSV without choosing it.
    labels = tmp_path / "labels.csv"
    labels.write_text(
        "text,label\n" + "".join(f"sample text {i} on topic {i % 3},{'abc'[i % 3]}\n" for i in range(30))
    )
    page.goto(base + "/datasets/")
    page.set_input_files("#upload-file", str(labels))
    assert page.input_value("#upload-format") == "csv"
    csv_id = _upload(page, base, labels, "classification")
    assert " · csv · " in page.locator("#stats").locator("xpath=preceding-sibling::p[1]").inner_text()

    # The same bytes under a new name are a new dataset (not a redirect to the old one).
    rows = distinct_chat_rows(60) + [chat("Spaced   out   question", "An answer.")]
    first = tmp_path / "first.jsonl"
    first.write_bytes(jsonl(rows))
    first_id = _upload(page, base, first, "chat")
    again = tmp_path / "again.jsonl"
    again.write_bytes(first.read_bytes())
    again_id = _upload(page, base, again, "chat")
    assert len({csv_id, first_id, again_id}) == 3
    assert "again.jsonl" in page.locator("h1").first.inner_text()

    # Clean makes v2 and says what changed in tables, not JSON.
    page.click("#clean-button")
    page.wait_for_url(re.compile(r".*\?version=2$"), timeout=60_000)
    changed = page.locator("#what-changed")
    assert changed.locator("#change-counts").is_visible()
    assert "{" not in changed.inner_text() and '"' not in changed.inner_text()
    # a whitespace change shows its spaces: Before and After differ on the page, as in the data
    example = changed.locator("#change-examples tbody tr").first.locator("td")
    assert example.nth(2).inner_text() == "Spaced   out   question"
    assert example.nth(3).inner_text() == "Spaced out question"
    page.screenshot(path=str(SHOTS / "datasets-what-changed.png"), full_page=True)

    # A Clean of v2 changes nothing: a notice (not the red error), and no identical v3.
    page.click("#clean-button")
    page.wait_for_function(
        "document.getElementById('action-message').textContent.includes('nothing to clean')", timeout=30_000
    )
    assert page.locator("#action-error").is_hidden()
    page.reload()
    assert page.locator("#versions > table > tbody > tr").count() == 2
    page.screenshot(path=str(SHOTS / "datasets-nothing-to-clean.png"), full_page=True)

    # The preview pages forwards and back, and searches.
    page.goto(f"{base}/datasets/{first_id}/?version=1&split=train")
    page.click("#next-page")
    page.wait_for_url(re.compile(r".*page=2$"))
    assert page.locator("#previous-page").evaluate("el => el.tagName") == "A"
    page.click("#previous-page")
    page.wait_for_url(re.compile(r".*page=1$"))
    page.fill("#preview-search input[name=q]", "spaced")
    page.keyboard.press("Enter")
    page.wait_for_url(re.compile(r".*q=spaced.*"))
    assert page.locator("#preview .sample").count() == 1
    page.screenshot(path=str(SHOTS / "datasets-preview-search.png"), full_page=True)
