from __future__ import annotations

from datasets_app.services import dataset_prepare
from tests.datasets_app.conftest import chat, distinct_chat_rows, jsonl


def test_the_list_and_detail_pages(client, researcher, make_user, artifact_root):
    rows = distinct_chat_rows(45) + [chat("Tell me about <b>this</b>", "An answer with markup.")]
    rows.append(chat("Spaced   out  question", "An answer."))  # something for Clean to change
    version = dataset_prepare(owner=researcher, name="pages", content=jsonl(rows), task_type="chat")
    client.force_login(researcher)
    listing = client.get("/datasets/")
    assert (
        listing.status_code == 200 and b"ds-001" in listing.content and b'id="upload-form"' in listing.content
    )
    page = client.get("/datasets/ds-001/?split=train&page=2")
    html = page.content.decode()
    assert page.status_code == 200
    assert 'id="row-21"' in html and 'class="message assistant"' in html  # page 2 starts at row 21
    assert "html_markup" in html and "vendor/plotly.min.js" in html
    issue = next(i for i in version.validation_issues if i["code"] == "html_markup")
    assert f"split={issue['split']}&page=" in html and f"#row-{issue['split_row']}" in html
    from datasets_app.services import dataset_clean

    dataset_clean(version=version)
    cleaned = client.get("/datasets/ds-001/?version=2").content.decode()
    assert "What changed in v2" in cleaned and "cleaned from" in cleaned
    other = make_user("otto")
    client.force_login(other)
    assert client.get("/datasets/ds-001/").status_code == 404
    evaluator = make_user("eve", role="evaluator")
    client.force_login(evaluator)
    assert client.get("/datasets/").status_code == 403
