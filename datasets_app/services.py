"""Dataset services: turn uploaded rows into an immutable, split, validated dataset version.

This is the foundation's first cut (JSONL for chat / instruction / completion); the datasets issue
extends formats, validation checks, cleaning and augmentation.
"""

from __future__ import annotations

import hashlib
import json
import random
from pathlib import Path
from typing import Any

from django.conf import settings
from django.db import transaction

from datasets_app.models import Dataset, DatasetVersion, TaskType, ValidationStatus
from t4dm_site.errors import InvalidInput

DEFAULT_SPLIT = {"train": 0.8, "validation": 0.1, "test": 0.1}
SPLIT_FILES = {"train": "train.jsonl", "validation": "validation.jsonl", "test": "test.jsonl"}


def _row_error(line: int, message: str) -> InvalidInput:
    return InvalidInput(f"line {line}: {message}", details={"line": line}, code="invalid_row")


def _check_row(row: Any, task_type: str, line: int) -> None:
    if not isinstance(row, dict):
        raise _row_error(line, "each line must be a JSON object")
    if task_type == TaskType.CHAT:
        messages = row.get("messages")
        if not isinstance(messages, list) or not messages:
            raise _row_error(line, "chat rows need a non-empty 'messages' list")
        for index, message in enumerate(messages):
            if not isinstance(message, dict) or message.get("role") not in {"system", "user", "assistant"}:
                raise _row_error(line, f"messages[{index}].role must be system, user or assistant")
            if not isinstance(message.get("content"), str):
                raise _row_error(line, f"messages[{index}].content must be a string")
        if not any(m["role"] == "assistant" for m in messages):
            raise _row_error(line, "chat rows need at least one assistant message to learn from")
    elif task_type == TaskType.INSTRUCTION:
        for field in ("instruction", "output"):
            if not isinstance(row.get(field), str) or not row[field].strip():
                raise _row_error(line, f"instruction rows need a non-empty string '{field}'")
    elif task_type == TaskType.COMPLETION:
        if not (
            isinstance(row.get("text"), str)
            or (isinstance(row.get("prompt"), str) and isinstance(row.get("completion"), str))
        ):
            raise _row_error(
                line, "completion rows need 'prompt' and 'completion' strings, or a 'text' string"
            )
    elif task_type == TaskType.CLASSIFICATION:
        if not isinstance(row.get("text"), str) or "label" not in row:
            raise _row_error(line, "classification rows need a 'text' string and a 'label'")


def parse_jsonl(content: bytes, *, task_type: str) -> list[dict]:
    try:
        text = content.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise InvalidInput(
            f"the file is not UTF-8 text (byte {exc.start})", code="invalid_encoding"
        ) from None
    rows = []
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as exc:
            raise _row_error(number, f"not valid JSON ({exc.msg} at column {exc.colno})") from None
        _check_row(row, task_type, number)
        rows.append(row)
    if not rows:
        raise InvalidInput("the file holds no rows", code="empty_dataset")
    return rows


def _io_text(row: dict, task_type: str) -> tuple[str, str]:
    if task_type == TaskType.CHAT:
        prompt = "\n".join(m["content"] for m in row["messages"] if m["role"] != "assistant")
        answer = "\n".join(m["content"] for m in row["messages"] if m["role"] == "assistant")
        return prompt, answer
    if task_type == TaskType.INSTRUCTION:
        return f"{row['instruction']}\n{row.get('input') or ''}", row["output"]
    if task_type == TaskType.COMPLETION:
        return (row["prompt"], row["completion"]) if "prompt" in row else ("", row["text"])
    return row["text"], str(row["label"])


def _token_statistics(rows: list[dict], task_type: str) -> dict[str, int]:
    """Average input/output length in tokens of the built-in tiny model's tokenizer."""
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(settings.TINY_MODEL_DIR))
    pairs = [_io_text(row, task_type) for row in rows]
    inputs = tokenizer([p for p, _ in pairs], add_special_tokens=False)["input_ids"]
    outputs = tokenizer([a for _, a in pairs], add_special_tokens=False)["input_ids"]
    return {
        "avg_tokens_input": round(sum(map(len, inputs)) / len(rows)),
        "avg_tokens_output": round(sum(map(len, outputs)) / len(rows)),
    }


def _split(rows: list[dict], fractions: dict[str, float], seed: int) -> dict[str, list[dict]]:
    order = list(range(len(rows)))
    random.Random(seed).shuffle(order)
    n_val = round(len(rows) * fractions["validation"])
    n_test = round(len(rows) * fractions["test"])
    n_train = len(rows) - n_val - n_test
    if n_train < 1:
        raise InvalidInput(f"{len(rows)} rows are too few to split {fractions}")
    cut = {
        "train": order[:n_train],
        "validation": order[n_train : n_train + n_val],
        "test": order[n_train + n_val :],
    }
    return {name: [rows[i] for i in indices] for name, indices in cut.items()}


def dataset_prepare(
    *,
    owner,
    name: str,
    content: bytes,
    task_type: str = TaskType.CHAT,
    format: str = "jsonl",
    seed: int = 42,
) -> DatasetVersion:
    """Validate, split and store rows as a new dataset version. The same content from the same owner
    is recognised by its hash and returns the existing version."""
    if task_type not in TaskType.values:
        raise InvalidInput(f"unknown task_type {task_type!r}; choose one of {', '.join(TaskType.values)}")
    if format != "jsonl":
        raise InvalidInput(f"format {format!r} is not supported yet; use jsonl")
    content_hash = hashlib.sha256(content).hexdigest()
    existing = DatasetVersion.objects.filter(
        content_hash=content_hash, dataset__owner=owner, task_type=task_type
    ).first()
    if existing:
        return existing
    rows = parse_jsonl(content, task_type=task_type)
    splits = _split(rows, DEFAULT_SPLIT, seed)
    statistics = {
        "total_samples": len(rows),
        "train_samples": len(splits["train"]),
        "val_samples": len(splits["validation"]),
        "test_samples": len(splits["test"]),
        **_token_statistics(rows, task_type),
    }
    with transaction.atomic():
        dataset = Dataset.objects.create(name=name, owner=owner, task_type=task_type)
        folder = Path(settings.ARTIFACT_ROOT) / "datasets" / dataset.public_id / "v1"
        version = DatasetVersion.objects.create(
            dataset=dataset,
            number=1,
            content_hash=content_hash,
            format=format,
            task_type=task_type,
            path=str(folder),
            splits={name: {"file": SPLIT_FILES[name], "rows": len(part)} for name, part in splits.items()},
            statistics=statistics,
            validation_status=ValidationStatus.PASSED,
            validation_issues=[],
        )
        # Files are written inside the transaction: if writing fails, no record points at nothing.
        folder.mkdir(parents=True, exist_ok=True)
        for split_name, part in splits.items():
            tmp = folder / f".{SPLIT_FILES[split_name]}.tmp"
            tmp.write_text("".join(json.dumps(row, ensure_ascii=False) + "\n" for row in part))
            tmp.replace(folder / SPLIT_FILES[split_name])
    return version


def dataset_result(version: DatasetVersion) -> dict:
    """The seed's DatasetResult shape."""
    return {
        "dataset_id": version.dataset.public_id,
        "format": version.format,
        "task_type": version.task_type,
        "statistics": version.statistics,
        "validation": {"status": version.validation_status, "issues": version.validation_issues},
        "output_path": version.path.rstrip("/") + "/",
    }
