"""Issue 17 item 12: deeply nested JSON in a human-eval question upload or a dataset `json_schema` was
a RecursionError (500). Nesting is capped (t4dm_site/jsonlimits.py): a 400 that says so."""

from __future__ import annotations

import json

import pytest

from tests.conftest import DEMO_ROWS

DEEP = "[" * 100_000 + "]" * 100_000  # json.loads itself overflows
SCHEMA_DEEP = '{"items": ' * 500 + "{}" + "}" * 500  # parses, but the schema check recursed too deep


@pytest.mark.parametrize(
    "schema", [DEEP, SCHEMA_DEEP, '{"type": "object", "properties": {"a": ' + DEEP + "}}"]
)
@pytest.mark.parametrize("endpoint", ["/datasets", "/datasets/validate"])
def test_a_deeply_nested_json_schema_is_a_400(api, researcher, artifact_root, schema, endpoint):
    from datasets_app.models import Dataset

    response = api.upload(
        researcher, endpoint, content=DEMO_ROWS.read_bytes(), name="rows.jsonl", json_schema=schema,
        task_type="chat",
    )  # fmt: skip
    assert response.status_code == 400, response.content[:300]
    error = response.json()["error"]
    assert error["message"] == "json_schema: JSON nested deeper than 64 levels"
    assert not Dataset.objects.exists()


def test_a_json_schema_of_ordinary_depth_still_applies(api, researcher, artifact_root):
    schema = {"type": "object", "required": ["messages"], "properties": {"messages": {"type": "array"}}}
    response = api.upload(
        researcher, "/datasets/validate", content=DEMO_ROWS.read_bytes(), name="rows.jsonl",
        json_schema=json.dumps(schema), task_type="chat",
    )  # fmt: skip
    assert response.status_code == 200, response.content[:300]


@pytest.mark.parametrize(
    "line", ['{"question": ' + DEEP + "}", '{"question": ' + "[" * 2000 + "]" * 2000 + "}"]
)
def test_a_deeply_nested_question_line_is_a_400(api, researcher, make_user, artifact_root, line):
    from experiments.human_eval.models import HumanEvalTask

    make_user("ann", role="evaluator")
    setup = json.dumps({"model_path": "t4dm-tiny", "evaluators": ["ann"], "overlap": 1})
    content = b"What is LoRA?\n" + line.encode() + b"\n"
    response = api.upload(
        researcher, "/human-eval/tasks/upload", content=content, name="q.jsonl", setup=setup
    )
    assert response.status_code == 400, response.content[:300]
    assert "line 2: JSON nested deeper than 64 levels" in response.json()["error"]["message"]
    assert not HumanEvalTask.objects.exists()


@pytest.mark.parametrize("endpoint", ["/datasets", "/datasets/validate"])
def test_a_deeply_nested_dataset_row_is_not_a_server_error(api, researcher, artifact_root, endpoint):
    row = (
        '{"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "yo"}], "x": '
        + DEEP
        + "}"
    )
    content = DEMO_ROWS.read_bytes() + row.encode() + b"\n"
    response = api.upload(researcher, endpoint, content=content, name="rows.jsonl", task_type="chat")
    assert response.status_code < 500, response.content[:300]
