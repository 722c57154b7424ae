"""Issue 19 ("Knowledge-base import ... API-only"; Acceptance: "upload or import a dataset" without the
API): the datasets page imports a knowledge base, the shipped example or an uploaded JSON, in the system
Chromium. Screenshots: /tmp/auditB-shots/knowledge-*.png."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

pytestmark = [pytest.mark.e2e, pytest.mark.browser]

SHOTS = Path("/tmp/auditB-shots")


def test_import_a_knowledge_base_from_the_datasets_page(
    live_server, page, researcher, artifact_root, tmp_path
):
    SHOTS.mkdir(exist_ok=True)
    base = live_server.url
    page.set_viewport_size({"width": 1440, "height": 900})
    page.goto(base + "/login/")
    page.fill("input[name=username]", researcher.username)
    page.fill("input[name=password]", "pw-" + researcher.username)
    page.click("button[type=submit]")
    page.wait_for_url(base + "/")
    page.goto(base + "/datasets/")
    assert "POST /api/v1" not in page.inner_text("main")  # the empty state no longer sends people to the API

    # the shipped example, with no file
    page.click("#knowledge-button")
    page.wait_for_url(re.compile(r".*/datasets/ds-\d+/$"))
    assert "Imported" in page.inner_text(".messages") and "from the knowledge base" in page.inner_text(
        ".messages"
    )
    assert int(page.locator("#stats td").first.inner_text()) > 10
    assert (
        "Knowledge" in page.locator("#versions").inner_text()
        or "knowledge" in page.locator("#versions").inner_text()
    )
    page.screenshot(path=str(SHOTS / "knowledge-example.png"), full_page=True)

    # a file that is not a knowledge base: the page says why, nothing is made
    bad = tmp_path / "not-a-kb.json"
    bad.write_text(json.dumps(["just", "a", "list"]))
    page.goto(base + "/datasets/")
    page.set_input_files("input[name=knowledge_file]", str(bad))
    page.click("#knowledge-button")
    page.wait_for_url(re.compile(r".*/datasets/#knowledge-import$"))
    assert "The knowledge base was not imported" in page.inner_text(".messages")
    assert page.locator("#dataset-table tbody tr").count() == 1
    page.screenshot(path=str(SHOTS / "knowledge-refused.png"), full_page=True)
