from __future__ import annotations

import json

import pytest

from experiments.providers.openai_provider import to_openai_chat
from t4dm_site.errors import InvalidInput

ROW = {
    "messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello", "weight": 1}]
}


def test_rows_become_openai_chat_jsonl():
    lines = to_openai_chat([ROW] * 10).decode().splitlines()
    assert len(lines) == 10 and json.loads(lines[0]) == ROW


@pytest.mark.parametrize(
    ("rows", "message"),
    [
        ([ROW] * 3, "at least 10"),
        ([{"messages": [{"role": "robot", "content": "x"}]}] * 10, "role 'robot'"),
        ([{"messages": [{"role": "user", "content": "x"}]}] * 10, "assistant message"),
        ([{"messages": [{"role": "user", "content": "x", "weight": 1}, ROW["messages"][1]]}] * 10, "weight"),
    ],
)
def test_openai_rules_are_enforced(rows, message):
    with pytest.raises(InvalidInput) as refused:
        to_openai_chat(rows)
    assert message in refused.value.message


def test_finetune_anthropic_answers_not_available(api, researcher):
    response = api.post(researcher, "/finetune/anthropic", {"dataset_path": "ds-001", "base_model": "claude"})
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "provider_not_available"
    assert "not available" in response.json()["error"]["message"]


def test_finetune_openai_without_a_key_says_what_to_set(api, researcher, settings, artifact_root):
    settings.OPENAI_API_KEY = ""
    from tests.conftest import DEMO_ROWS

    dataset = api.upload(researcher, "/datasets", content=DEMO_ROWS.read_bytes(), task_type="chat").json()
    response = api.post(researcher, "/finetune/openai", {"dataset_path": dataset["dataset_id"]})
    assert response.status_code == 400 and "T4DM_OPENAI_API_KEY" in response.json()["error"]["message"]
