"""Issue 19, Datasets: the defects a browser user met on the dataset pages, each pinned by a test."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.datasets_app.conftest import distinct_chat_rows, jsonl


def _classification_csv(n: int = 30) -> bytes:
    lines = ["text,label"] + [f"sample text number {i} about topic {i % 3},{'abc'[i % 3]}" for i in range(n)]
    return ("\n".join(lines) + "\n").encode()


def test_the_format_is_taken_from_the_file_extension_when_not_given(api, researcher, artifact_root):
    stored = api.upload(
        researcher, "/datasets", content=_classification_csv(), name="labels.csv", task_type="classification"
    )
    assert stored.status_code == 201, stored.content[:300]
    assert stored.json()["format"] == "csv"
    as_json = json.dumps(distinct_chat_rows(12)).encode()
    stored = api.upload(researcher, "/datasets", content=as_json, name="chats.json", task_type="chat")
    assert stored.status_code == 201 and stored.json()["format"] == "json", stored.content[:300]
    checked = api.upload(
        researcher,
        "/datasets/validate",
        content=_classification_csv(),
        name="x.csv",
        task_type="classification",
    )
    assert checked.status_code == 200 and checked.json()["statistics"]["total_samples"] == 30, (
        checked.content[:300]
    )
    explicit = api.upload(researcher, "/datasets", content=jsonl(distinct_chat_rows(12)), name="rows.txt")
    assert explicit.status_code == 201 and explicit.json()["format"] == "jsonl"


def test_the_upload_page_offers_the_format_from_the_extension(client, researcher, artifact_root):
    client.force_login(researcher)
    html = client.get("/datasets/").content.decode()
    assert '<option value="">from the file extension</option>' in html


@pytest.mark.e2e
@pytest.mark.browser
def test_a_refused_upload_lists_all_its_errors_on_the_page(
    live_server, page, researcher, artifact_root, tmp_path
):
    good = distinct_chat_rows(5)
    bad = [{"messages": [{"role": "user", "content": f"only a question {i}"}]} for i in range(81)]
    data = tmp_path / "broken.jsonl"
    data.write_bytes(jsonl(good + bad))
    page.goto(live_server.url + "/login/")
    page.fill("input[name=username]", researcher.username)
    page.fill("input[name=password]", "pw-" + researcher.username)
    page.click("button[type=submit], input[type=submit]")
    page.goto(live_server.url + "/datasets/")
    page.set_input_files("#upload-file", str(data))
    page.click("#upload-button")
    page.wait_for_selector("#upload-issues:not([hidden]) tbody tr", timeout=60_000)
    status = page.inner_text("#upload-status")
    assert "more errors" in status and "All 81 errors" in status, status
    assert page.get_attribute("#upload-status a", "href") == "#upload-issues"
    rows = page.locator("#upload-issues tbody tr")
    assert rows.count() >= 50  # every kept example, then a line counting the rest of each code
    assert "31 more rows" in page.inner_text("#upload-issues"), page.inner_text("#upload-issues")[:500]


def test_the_same_bytes_under_a_new_name_are_a_new_dataset_when_asked(api, researcher, artifact_root):
    content = jsonl(distinct_chat_rows(12))
    created = api.upload(researcher, "/datasets", content=content, name="first.jsonl")
    first = created.json()
    assert created.status_code == 201
    again = api.upload(researcher, "/datasets", content=content, name="other.jsonl")
    # documented API behaviour kept: identical content is that dataset (201 as always), and a header says so
    assert again.json()["dataset_id"] == first["dataset_id"] and again.status_code == 201
    assert again.headers["X-T4DM-Existing-Dataset"] == "true"
    assert "X-T4DM-Existing-Dataset" not in created.headers
    renamed = api.upload(researcher, "/datasets", content=content, name="second.jsonl", new_dataset="true")
    assert renamed.status_code == 201, renamed.content[:300]
    assert renamed.json()["dataset_id"] != first["dataset_id"]
    from datasets_app.models import Dataset

    assert Dataset.objects.get(name="second.jsonl").public_id == renamed.json()["dataset_id"]


def test_the_upload_page_asks_for_a_new_dataset_unless_told_to_reuse(client, researcher, artifact_root):
    client.force_login(researcher)
    html = client.get("/datasets/").content.decode()
    assert 'id="reuse-existing"' in html
    body = (Path(__file__).resolve().parents[2] / "static" / "js" / "datasets.js").read_bytes()
    assert b'data.set("new_dataset", "true")' in body and b"Identical content is already stored as" in body


def test_a_clean_that_changes_nothing_makes_no_version_and_says_so(api, researcher, artifact_root):
    created = api.upload(researcher, "/datasets", content=jsonl(distinct_chat_rows(20)), name="tidy.jsonl")
    dataset_id = created.json()["dataset_id"]
    answer = api.post(
        researcher,
        f"/datasets/{dataset_id}/clean",
        {"version": 1, "remove_duplicates": True, "fix_formatting": True, "near_duplicates": False},
    )
    assert answer.status_code == 409, answer.content[:300]
    error = answer.json()["error"]
    assert error["code"] == "nothing_to_clean" and "nothing to clean" in error["message"]
    versions = api.get(researcher, f"/datasets/{dataset_id}/versions").json()
    assert [v["version"] for v in versions] == [1]


def test_augment_adds_no_row_that_is_already_there(researcher, artifact_root):
    from datasets_app.augmentation import augment_rows
    from datasets_app.pipeline import normalise_text
    from datasets_app.rows import io_text

    rows = distinct_chat_rows(30)
    new_rows, provenance, report = augment_rows(
        rows, task_type="chat", methods=["noise", "template_paraphrase"], options={"copies_per_row": 3}
    )
    keys = [tuple(normalise_text(t) for t in io_text(r, "chat")) for r in rows + new_rows]
    assert len(keys) == len(set(keys)), "an augmented row repeats an existing or another augmented row"
    assert len(provenance) == len(new_rows) and sum(report["added_rows"].values()) == len(new_rows)
    assert sum(report["duplicates_skipped"].values()) > 0


def test_what_changed_is_a_table_and_the_preview_pages_both_ways_and_searches(
    client, api, researcher, artifact_root
):
    from datasets_app.services import dataset_clean, dataset_prepare
    from tests.datasets_app.conftest import chat

    rows = distinct_chat_rows(60) + [chat("Spaced   out   question", "An answer.")]
    version = dataset_prepare(owner=researcher, name="changes", content=jsonl(rows), task_type="chat")
    dataset_clean(version=version)
    client.force_login(researcher)
    html = client.get("/datasets/ds-001/?version=2").content.decode()
    assert 'id="change-counts"' in html and "<td>whitespace tidied</td>" in html
    assert 'id="change-splits"' in html and 'id="change-examples"' in html
    first = client.get("/datasets/ds-001/?version=1&split=train").content.decode()
    assert 'id="previous-page"' in first and 'id="next-page"' in first and 'id="preview-search"' in first
    second = client.get("/datasets/ds-001/?version=1&split=train&page=2").content.decode()
    assert 'href="?version=1&split=train&q=&page=1" id="previous-page"' in second
    found = client.get("/datasets/ds-001/?version=1&split=train&q=spaced").content.decode()
    assert found.count('class="sample"') == 1 and "Spaced" in found and "containing “spaced”" in found
    train = api.get(researcher, "/datasets/ds-001/versions/1/rows?split=train&q=QUESTION 1").json()
    assert train["total"] >= 1 and all("Question 1" in json.dumps(r) for r in train["rows"])
    assert train["numbers"] and train["q"] == "QUESTION 1"
