from __future__ import annotations

import csv
import io
import json

import datasets
import pyarrow.parquet as pq
import pytest

from datasets_app.models import Dataset
from datasets_app.services import dataset_prepare
from t4dm_site.errors import InvalidInput
from tests.datasets_app.conftest import chat, distinct_chat_rows, jsonl

ROWS = {
    "chat": [
        chat(f"What is item {i}?", f"Item {i} is thing number {i}.", system="Be brief.") for i in range(20)
    ],
    "instruction": [
        {"instruction": f"Double {i}", "input": "" if i % 2 else str(i), "output": str(2 * i)}
        for i in range(20)
    ],
    "completion": [
        {"prompt": f"Count to {i}:", "completion": " ".join(map(str, range(i + 1)))} for i in range(20)
    ],
    "classification": [
        {"text": f"review {i} was {'great' if i % 2 else 'awful'}", "label": "pos" if i % 2 else "neg"}
        for i in range(20)
    ],
}


def _as(format: str, rows: list[dict], tmp_path) -> bytes:
    if format == "jsonl":
        return jsonl(rows)
    if format == "json":
        return json.dumps(rows).encode()
    if format == "csv":
        out = io.StringIO()
        writer = csv.DictWriter(out, fieldnames=list(rows[0]))
        writer.writeheader()
        for row in rows:
            writer.writerow({k: json.dumps(v) if isinstance(v, list) else v for k, v in row.items()})
        return out.getvalue().encode()
    path = tmp_path / "rows.parquet"
    datasets.Dataset.from_list(rows).to_parquet(str(path))
    return path.read_bytes()


@pytest.mark.parametrize("format", ["jsonl", "json", "csv", "parquet"])
@pytest.mark.parametrize("task_type", ["chat", "instruction", "completion", "classification"])
def test_every_format_and_task_type_is_stored_as_parquet_splits(
    researcher, artifact_root, tmp_path, format, task_type
):
    version = dataset_prepare(
        owner=researcher,
        name="d",
        content=_as(format, ROWS[task_type], tmp_path),
        task_type=task_type,
        format=format,
    )
    stats = version.statistics
    assert (stats["total_samples"], stats["train_samples"], stats["val_samples"], stats["test_samples"]) == (
        20,
        16,
        2,
        2,
    )
    assert stats["avg_tokens_output"] > 0 and set(stats["tokens_input"]) == {"mean", "p50", "p95", "max"}
    files = {name: version.path + "/" + info["file"] for name, info in version.splits.items()}
    assert all(f.endswith(".parquet") for f in files.values())
    train = datasets.load_dataset("parquet", data_files=files["train"], split="train")
    assert len(train) == 16
    if task_type == "chat":
        assert train[0]["messages"][0] == {"role": "system", "content": "Be brief."}
        assert (
            str(pq.read_schema(files["train"]).field("messages").type)
            == "list<element: struct<role: string, content: string>>"
        )
    if task_type == "classification":
        assert stats["label_counts"] == {"neg": 10, "pos": 10}
        assert stats["label_counts_by_split"]["test"] == {"neg": 1, "pos": 1}  # stratified


def test_the_same_content_is_recognised_and_splits_follow_the_seed(researcher, artifact_root):
    content = jsonl(distinct_chat_rows(50))
    first = dataset_prepare(owner=researcher, name="a", content=content, task_type="chat")
    again = dataset_prepare(owner=researcher, name="b", content=content, task_type="chat")
    assert again.pk == first.pk and Dataset.objects.count() == 1
    other_seed = dataset_prepare(owner=researcher, name="c", content=content, task_type="chat", seed=7)
    custom = dataset_prepare(
        owner=researcher,
        name="d",
        content=content,
        task_type="chat",
        split={"train": 0.6, "validation": 0.2, "test": 0.2},
    )
    assert custom.statistics["val_samples"] == 10 and custom.statistics["test_samples"] == 10

    def test_rows(v):
        return pq.read_table(v.path + "/test.parquet").to_pylist()

    assert test_rows(other_seed) != test_rows(first)
    # Deterministic: the same seed elsewhere (another owner) gives the same split.
    from django.contrib.auth import get_user_model

    bob = get_user_model().objects.create_user("bob")
    assert test_rows(dataset_prepare(owner=bob, name="x", content=content, task_type="chat")) == test_rows(
        first
    )


def test_token_statistics_use_the_tiny_tokenizer(researcher, artifact_root, tiny_model_dir):
    from transformers import AutoTokenizer

    rows = [chat("hello there", "general kenobi " * (i + 1)) for i in range(10)]
    version = dataset_prepare(owner=researcher, name="t", content=jsonl(rows), task_type="chat")
    tokenizer = AutoTokenizer.from_pretrained(str(tiny_model_dir))
    lengths = sorted(
        len(tokenizer(r["messages"][1]["content"], add_special_tokens=False)["input_ids"]) for r in rows
    )
    assert version.statistics["tokens_output"]["max"] == lengths[-1]
    assert version.statistics["avg_tokens_output"] == round(sum(lengths) / len(lengths))


def test_a_file_under_the_import_root_and_a_save_to_disk_folder(researcher, artifact_root, import_root):
    (import_root / "sub").mkdir()
    (import_root / "sub" / "kb.jsonl").write_bytes(jsonl(distinct_chat_rows(10)))
    version = dataset_prepare(owner=researcher, name="", source_path="sub/kb.jsonl", task_type="chat")
    assert version.statistics["total_samples"] == 10 and version.origin == "import"

    datasets.Dataset.from_list(ROWS["instruction"]).save_to_disk(str(import_root / "saved"))
    saved = dataset_prepare(
        owner=researcher, name="", source_path=str(import_root / "saved"), task_type="instruction"
    )
    assert saved.format == "hf" and saved.statistics["total_samples"] == 20


def test_paths_outside_the_import_root_are_refused_symlinks_included(
    researcher, artifact_root, import_root, tmp_path
):
    outside = tmp_path / "secret.jsonl"
    outside.write_bytes(jsonl(distinct_chat_rows(5)))
    (import_root / "link.jsonl").symlink_to(outside)
    for path in ("../secret.jsonl", str(outside), "link.jsonl"):
        with pytest.raises(InvalidInput) as refused:
            dataset_prepare(owner=researcher, name="x", source_path=path, task_type="chat")
        assert refused.value.code == "path_outside_import_root"
    assert Dataset.objects.count() == 0
