from __future__ import annotations

from datasets_app.services import dataset_prepare, dataset_validate
from tests.datasets_app.conftest import chat, distinct_chat_rows, jsonl


def _codes(result) -> set[str]:
    return {issue["code"] for issue in result["issues"]}


def test_a_clean_file_passes(researcher, artifact_root):
    result = dataset_validate(content=jsonl(distinct_chat_rows(30)), task_type="chat")
    assert result["status"] == "passed", result["issues"]


def test_format_errors_fail_with_code_severity_line_and_field(artifact_root):
    content = jsonl(
        [
            chat("hi", "there friend"),
            {"messages": [{"role": "user", "content": "x"}, {"role": "bot", "content": "y"}]},
        ]
    )
    result = dataset_validate(content=content, task_type="chat")
    assert result["status"] == "failed"
    issue = next(i for i in result["issues"] if i["code"] == "unknown_role")
    assert issue["severity"] == "error" and issue["line"] == 2 and issue["row"] == 2
    assert issue["field"] == "messages[1].role" and "use system, user or assistant" in issue["message"]


def test_quality_problems_are_warnings_naming_their_rows(artifact_root):
    rows = [
        chat("Tell me about <b>bold</b> things", "They are bold and strong."),
        chat("What?", "ok"),
        chat("Scream", "A" * 40),
        chat("Encoding", "The cafÃ© is open and the naÃ¯ve user is happy."),
        chat("  ", "Whitespace question gets an answer."),
        chat("Same question", "Same answer here."),
        chat("same   QUESTION", "Same answer here."),
    ]
    result = dataset_validate(content=jsonl(rows), task_type="chat")
    by_code = {i["code"]: i for i in result["issues"]}
    assert result["status"] == "warning"
    assert by_code["html_markup"]["line"] == 1
    assert by_code["short_output"]["line"] == 2
    assert by_code["repeated_characters"]["line"] == 3
    assert by_code["mojibake"]["line"] == 4
    assert by_code["empty_content"]["line"] == 5
    assert by_code["duplicate"]["line"] == 7 and by_code["duplicate"]["pair"][0]["line"] == 6


def test_leakage_across_splits_exact_and_near_duplicate_with_pairs(researcher, artifact_root):
    rows = distinct_chat_rows(40)
    base = "The quick brown fox jumps over the lazy dog near the river bank on a sunny morning " * 3
    rows += [chat(base, "A fox story.")] * 6  # exact copies land in several splits
    rows += [chat(base + f" variant{i}", "A fox story.") for i in range(6)]  # near copies
    version = dataset_prepare(owner=researcher, name="leaky", content=jsonl(rows), task_type="chat")
    codes = {i["code"] for i in version.validation_issues}
    assert {"leakage_exact", "leakage_near_duplicate"} <= codes
    pair = next(i for i in version.validation_issues if i["code"] == "leakage_near_duplicate")["pair"]
    assert pair[0]["split"] != pair[1]["split"] and all("split_row" in p for p in pair)
    # validate_dataset on the stored version finds the same leakage.
    assert {"leakage_exact", "leakage_near_duplicate"} <= _codes(dataset_validate(version=version))


def test_class_balance_and_token_limits(researcher, artifact_root, settings):
    rows = [{"text": f"good thing {i}", "label": "pos"} for i in range(40)] + [
        {"text": "bad thing", "label": "neg"}
    ]
    rows.append({"text": "word " * 3000, "label": "pos"})
    result = dataset_validate(content=jsonl(rows), task_type="classification")
    by_code = {i["code"]: i for i in result["issues"]}
    assert by_code["class_imbalance"]["imbalance_ratio"] == 41.0
    assert "'neg' has 1 samples" in by_code["class_too_small"]["message"]
    assert by_code["over_max_length"]["rows"] == [42]


def test_an_optional_json_schema(artifact_root):
    schema = {"type": "object", "properties": {"label": {"enum": ["pos", "neg"]}}}
    content = jsonl([{"text": "a", "label": "pos"}, {"text": "b", "label": "maybe"}])
    result = dataset_validate(content=content, task_type="classification", schema=schema)
    issue = next(i for i in result["issues"] if i["code"] == "schema_violation")
    assert result["status"] == "failed" and issue["line"] == 2 and issue["field"] == "$.label"


def test_the_validate_endpoints(api, researcher, artifact_root):
    from django.core.files.uploadedfile import SimpleUploadedFile
    from django.test import Client

    client = Client(headers={"Authorization": f"Bearer {researcher.raw_token}"})
    response = client.post(
        "/api/v1/datasets/validate",
        {"file": SimpleUploadedFile("d.jsonl", jsonl([chat("a", "b")]) + b"oops\n"), "task_type": "chat"},
    )
    body = response.json()
    assert response.status_code == 200 and body["status"] == "failed" and body["issues"][-1]["line"] == 2
    created = api.upload(
        researcher, "/datasets", content=jsonl(distinct_chat_rows(20)), task_type="chat"
    ).json()
    stored = api.post(
        researcher, f"/datasets/{created['dataset_id']}/validate", {"row_schema": {"required": ["id"]}}
    )
    assert stored.status_code == 200 and stored.json()["status"] == "failed"
