from __future__ import annotations

import json

import pyarrow.parquet as pq
import pytest

from datasets_app.models import DatasetTask, DatasetVersion
from datasets_app.services import (
    dataset_augment_request,
    dataset_clean,
    dataset_prepare,
    dataset_prepare_from_knowledge,
)
from datasets_app.tasks import augment_dataset_task
from t4dm_site.errors import Conflict, InvalidInput
from tests.datasets_app.conftest import chat, distinct_chat_rows, jsonl


def test_clean_makes_a_new_version_and_reports_exactly_what_changed(researcher, artifact_root):
    rows = distinct_chat_rows(30) + [
        {
            "messages": [
                {"role": "User", "content": "  Spaced   out  "},
                {"role": "assistant", "content": "Yes."},
            ]
        },
        chat("Encoding", "The cafÃ© is open."),
        chat("Nothing here", "   "),
        chat("Question 0: what links alpha and alpha in case alpha?", "Answer number 0 is alpha alpha 0."),
    ]
    version = dataset_prepare(owner=researcher, name="dirty", content=jsonl(rows), task_type="chat")
    cleaned = dataset_clean(version=version)
    report = cleaned.report
    assert cleaned.number == 2 and cleaned.parent == version and cleaned.origin == "cleaned"
    assert report["changes"]["role_case_fixed"] == 1
    assert report["changes"]["whitespace_tidied"] == 1
    assert report["changes"]["mojibake_repaired"] == 1
    assert report["changes"]["empty_samples_dropped"] == 1
    assert report["changes"]["exact_duplicates_removed"] == 1
    assert report["examples"]["mojibake_repaired"][0]["after"] == "The café is open."
    assert cleaned.statistics["total_samples"] == 32
    texts = [
        m["content"]
        for split in cleaned.splits.values()
        for r in pq.read_table(f"{cleaned.path}/{split['file']}").to_pylist()
        for m in r["messages"]
    ]
    assert "Spaced out" in texts and "The café is open." in texts
    assert not {"role_case", "duplicate", "leakage_exact", "mojibake"} & {
        i["code"] for i in cleaned.validation_issues
    }
    with pytest.raises(Conflict, match="nothing to clean"):  # already clean: no identical v3 (issue 19)
        dataset_clean(version=cleaned)


def test_knowledge_import_makes_several_phrasings_per_item(researcher, artifact_root):
    version = dataset_prepare_from_knowledge(owner=researcher)  # the shipped example knowledge base
    report = version.report
    assert version.origin == "knowledge" and version.task_type == "chat"
    assert report["samples_by_kind"] == {"concept": 30, "procedure": 18, "fact": 30}
    rows = [
        r for s in version.splits.values() for r in pq.read_table(f"{version.path}/{s['file']}").to_pylist()
    ]
    questions = [
        r["messages"][1]["content"] for r in rows if r["messages"][2]["content"].startswith("Low-rank")
    ]
    assert {"What is LoRA?", "Explain low-rank adaptation in one sentence."} <= set(questions)
    steps = next(r for r in rows if r["messages"][1]["content"] == "How do I upload a dataset?")["messages"][
        2
    ]["content"]
    assert steps.startswith("1. Open the Datasets page.")
    instruction = dataset_prepare_from_knowledge(
        owner=researcher, knowledge_type="procedures", format="instruction", phrasings=2
    )
    assert instruction.task_type == "instruction" and instruction.statistics["total_samples"] == 12


def test_a_knowledge_base_that_breaks_the_schema_is_refused(researcher, artifact_root):
    with pytest.raises(InvalidInput) as refused:
        dataset_prepare_from_knowledge(
            owner=researcher, content=json.dumps({"version": 1, "concepts": [{"name": "x"}]}).encode()
        )
    assert "$.concepts[0]" in refused.value.message and "definition" in refused.value.message


def test_augment_adds_train_rows_with_provenance_through_the_task(
    researcher, artifact_root, django_capture_on_commit_callbacks
):
    version = dataset_prepare(
        owner=researcher, name="aug", content=jsonl(distinct_chat_rows(20)), task_type="chat"
    )
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        task = dataset_augment_request(
            owner=researcher, version=version, methods=["template_paraphrase", "noise"]
        )
    assert len(callbacks) == 1 and task.status == "queued"
    augment_dataset_task(task.pk)  # what the worker on the datasets queue runs
    task.refresh_from_db()
    assert task.status == "succeeded" and task.progress == 1.0
    augmented = task.result_version
    assert augmented.origin == "augmented" and augmented.parent == version
    assert augmented.statistics["train_samples"] == 16 + sum(augmented.report["added_rows"].values()) > 16
    assert augmented.statistics["val_samples"] == 2 and augmented.statistics["test_samples"] == 2
    train = pq.read_table(f"{augmented.path}/train.parquet").to_pylist()
    provenance = [json.loads(r["provenance"]) for r in train if r["provenance"]]
    assert {p["method"] for p in provenance} == {"template_paraphrase", "noise"}
    assert all(p["source_split"] == "train" for p in provenance)
    assert "provenance" not in pq.read_schema(f"{augmented.path}/test.parquet").names


def test_model_based_augmentation_without_a_model_says_what_to_configure(researcher, artifact_root):
    version = dataset_prepare(
        owner=researcher, name="aug", content=jsonl(distinct_chat_rows(10)), task_type="chat"
    )
    with pytest.raises(InvalidInput) as refused:
        dataset_augment_request(owner=researcher, version=version, methods=["paraphrase", "backtranslate"])
    assert "paraphrase_model" in refused.value.message and refused.value.code == "model_not_configured"
    assert DatasetTask.objects.count() == 0


def test_clean_knowledge_and_augment_endpoints(
    api, researcher, artifact_root, django_capture_on_commit_callbacks
):
    from django.test import Client

    client = Client(headers={"Authorization": f"Bearer {researcher.raw_token}"})
    created = client.post("/api/v1/datasets/knowledge", {"knowledge_type": "facts"})
    assert created.status_code == 201, created.content
    dataset_id = created.json()["dataset_id"]
    cleaned = api.post(researcher, f"/datasets/{dataset_id}/clean", {"remove_duplicates": True})
    assert cleaned.status_code == 201 and cleaned.json()["parent_version"] == 1
    refused = api.post(researcher, f"/datasets/{dataset_id}/augment", {})
    assert refused.status_code == 400 and refused.json()["error"]["code"] == "model_not_configured"
    with django_capture_on_commit_callbacks(execute=False):
        queued = api.post(researcher, f"/datasets/{dataset_id}/augment", {"methods": ["noise"]})
    assert queued.status_code == 202
    task_id = queued.json()["task_id"]
    augment_dataset_task(int(task_id.split("-")[1]))
    done = api.get(researcher, f"/datasets/tasks/{task_id}").json()
    assert done["status"] == "succeeded" and done["result_version"] == 3
    versions = api.get(researcher, f"/datasets/{dataset_id}/versions").json()
    assert [(v["version"], v["origin"], v["parent_version"]) for v in versions] == [
        (3, "augmented", 2),
        (2, "cleaned", 1),
        (1, "knowledge", None),
    ]
    page = api.get(researcher, f"/datasets/{dataset_id}/versions/1/rows", split="train", page=1).json()
    assert page["total"] == versions[2]["statistics"]["train_samples"] and len(page["rows"]) == min(
        20, page["total"]
    )
    download = api.get(researcher, f"/datasets/{dataset_id}/versions/1/download", split="test")
    assert download.status_code == 200 and b"".join(download.streaming_content)[:4] == b"PAR1"
    assert DatasetVersion.objects.count() == 3
