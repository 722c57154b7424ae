"""Load a dataset split and tokenise it by task type, with labels masked (-100) outside the target text."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import datasets
from transformers import PreTrainedTokenizerBase

IGNORE_INDEX = -100
TASK_TYPES = ("chat", "instruction", "completion", "classification")
CHAT_ROLES = ("system", "user", "assistant")
INSTRUCTION_PROMPT = "### Instruction:\n{instruction}\n\n{input_block}### Response:\n"

_FORMATS = {".jsonl": "json", ".json": "json", ".parquet": "parquet"}


def load_split(path: str | Path) -> datasets.Dataset:
    """Read one split from a .jsonl/.json/.parquet file."""
    path = Path(path)
    builder = _FORMATS.get(path.suffix.lower())
    if builder is None:
        raise ValueError(f"{path}: unsupported file type {path.suffix!r}; use .jsonl, .json or .parquet")
    if not path.is_file():
        raise ValueError(f"{path}: file not found")
    return datasets.load_dataset(builder, data_files=str(path), split="train")


def classification_labels(dataset: datasets.Dataset) -> list[str]:
    """The label names of a classification split, sorted (the model's id2label order)."""
    if "label" not in dataset.column_names or "text" not in dataset.column_names:
        raise ValueError("dataset: a classification row needs 'text' and 'label'")
    labels = sorted({str(label) for label in dataset["label"]})
    if len(labels) < 2:
        raise ValueError(f"dataset: classification needs at least 2 labels, found {labels}")
    return labels


def tokenize_classification(
    dataset: datasets.Dataset,
    tokenizer: PreTrainedTokenizerBase,
    *,
    labels: list[str],
    max_seq_length: int,
) -> datasets.Dataset:
    """``input_ids``/``attention_mask``/``labels`` (a class index) for a text-classification split."""
    label2id = {label: i for i, label in enumerate(labels)}
    if "label" not in dataset.column_names or "text" not in dataset.column_names:
        raise ValueError("dataset: a classification row needs 'text' and 'label'")

    def encode(row: dict[str, Any], index: int) -> dict[str, Any]:
        label = str(row["label"])
        if label not in label2id:
            raise ValueError(f"row {index + 1}: label {label!r} is not among the training labels {labels}")
        if not _is_str(row["text"]):
            raise ValueError(f"row {index + 1}: 'text' must be a string")
        encoded = tokenizer(row["text"], truncation=True, max_length=max_seq_length)
        return {
            "input_ids": encoded["input_ids"],
            "attention_mask": encoded["attention_mask"],
            "labels": label2id[label],
        }

    return dataset.map(
        encode,
        with_indices=True,
        remove_columns=dataset.column_names,
        keep_in_memory=True,
        load_from_cache_file=False,
        new_fingerprint=f"t4dm-classification-{max_seq_length}-{dataset._fingerprint}",
    )


def tokenize_dataset(
    dataset: datasets.Dataset,
    tokenizer: PreTrainedTokenizerBase,
    *,
    task_type: str,
    max_seq_length: int,
) -> datasets.Dataset:
    """Return a dataset of ``input_ids``/``attention_mask``/``labels``.

    Rows left with no trainable token after truncation (e.g. a prompt longer than max_seq_length)
    are dropped: they would only add NaN-free zero-weight batches.
    """
    if task_type not in TASK_TYPES or task_type == "classification":
        raise ValueError(f"task_type: {task_type!r} is not a generative task; use tokenize_classification")

    def encode(row: dict[str, Any], index: int) -> dict[str, list[int]]:
        return tokenize_row(
            row, tokenizer, task_type=task_type, max_seq_length=max_seq_length, row_number=index + 1
        )

    tokenized = dataset.map(
        encode,
        with_indices=True,
        remove_columns=dataset.column_names,
        keep_in_memory=True,
        load_from_cache_file=False,
        new_fingerprint=f"t4dm-{task_type}-{max_seq_length}-{dataset._fingerprint}",
    )
    return tokenized.filter(
        lambda labels: any(label != IGNORE_INDEX for label in labels),
        input_columns="labels",
        keep_in_memory=True,
        load_from_cache_file=False,
    )


def tokenize_row(
    row: dict[str, Any],
    tokenizer: PreTrainedTokenizerBase,
    *,
    task_type: str,
    max_seq_length: int,
    row_number: int = 1,
) -> dict[str, list[int]]:
    if task_type == "chat":
        input_ids, labels = _encode_chat(_chat_messages(row, row_number), tokenizer)
    elif task_type == "instruction":
        instruction, input_text, output = _instruction_fields(row, row_number)
        input_block = f"### Input:\n{input_text}\n\n" if input_text else ""
        prompt = INSTRUCTION_PROMPT.format(instruction=instruction, input_block=input_block)
        input_ids, labels = _encode_prompt_response(prompt, output, tokenizer)
    elif task_type == "completion":
        if _is_str(row.get("prompt")) and _is_str(row.get("completion")):
            input_ids, labels = _encode_prompt_response(row["prompt"], row["completion"], tokenizer)
        elif _is_str(row.get("text")) and row["text"]:
            input_ids = _encode_text(row["text"], tokenizer, add_special_tokens=True) + _eos(tokenizer)
            labels = list(input_ids)
        else:
            raise ValueError(
                f"row {row_number}: a completion row needs string 'prompt' and 'completion', or 'text'"
            )
    else:
        raise ValueError(f"task_type: unknown {task_type!r}; choose one of {', '.join(TASK_TYPES)}")
    input_ids, labels = input_ids[:max_seq_length], labels[:max_seq_length]
    return {"input_ids": input_ids, "attention_mask": [1] * len(input_ids), "labels": labels}


def _is_str(value: Any) -> bool:
    return isinstance(value, str)


def _eos(tokenizer: PreTrainedTokenizerBase) -> list[int]:
    return [tokenizer.eos_token_id] if tokenizer.eos_token_id is not None else []


def _encode_text(text: str, tokenizer: PreTrainedTokenizerBase, *, add_special_tokens: bool) -> list[int]:
    return tokenizer(text, add_special_tokens=add_special_tokens)["input_ids"]


def _encode_prompt_response(
    prompt: str, response: str, tokenizer: PreTrainedTokenizerBase
) -> tuple[list[int], list[int]]:
    prompt_ids = _encode_text(prompt, tokenizer, add_special_tokens=True)
    response_ids = _encode_text(response, tokenizer, add_special_tokens=False) + _eos(tokenizer)
    return prompt_ids + response_ids, [IGNORE_INDEX] * len(prompt_ids) + response_ids


def _chat_messages(row: dict[str, Any], row_number: int) -> list[dict[str, str]]:
    messages = row.get("messages")
    if not isinstance(messages, list) or not messages:
        raise ValueError(f"row {row_number}: a chat row needs a non-empty 'messages' list")
    for i, message in enumerate(messages):
        if (
            not isinstance(message, dict)
            or message.get("role") not in CHAT_ROLES
            or not _is_str(message.get("content"))
        ):
            raise ValueError(
                f"row {row_number}: messages[{i}] needs 'role' in {CHAT_ROLES} and a string 'content'"
            )
    if not any(m["role"] == "assistant" for m in messages):
        raise ValueError(f"row {row_number}: a chat row needs at least one assistant message")
    return [{"role": m["role"], "content": m["content"]} for m in messages]


def _instruction_fields(row: dict[str, Any], row_number: int) -> tuple[str, str, str]:
    instruction, input_text, output = row.get("instruction"), row.get("input") or "", row.get("output")
    if not (_is_str(instruction) and instruction and _is_str(output) and _is_str(input_text)):
        raise ValueError(
            f"row {row_number}: an instruction row needs string 'instruction' and 'output' (and optional 'input')"
        )
    return instruction, input_text, output


def _encode_chat(
    messages: list[dict[str, str]], tokenizer: PreTrainedTokenizerBase
) -> tuple[list[int], list[int]]:
    """Tokenise a conversation; only assistant turns are labelled.

    Templates that mark assistant text with ``{% generation %}`` (the tiny model's does) give the mask
    directly. For other templates, each assistant turn is the token span between the conversation
    rendered up to its generation prompt and rendered through that turn.
    """
    template = tokenizer.chat_template or ""
    if "{% generation %}" in template or "{%- generation %}" in template:
        encoded = tokenizer.apply_chat_template(
            messages, tokenize=True, return_dict=True, return_assistant_tokens_mask=True
        )
        input_ids = list(encoded["input_ids"])
        labels = [
            tok if keep else IGNORE_INDEX
            for tok, keep in zip(input_ids, encoded["assistant_masks"], strict=True)
        ]
        return input_ids, labels

    def render(msgs: list[dict[str, str]], add_generation_prompt: bool) -> list[int]:
        text = tokenizer.apply_chat_template(
            msgs, tokenize=False, add_generation_prompt=add_generation_prompt
        )
        return _encode_text(text, tokenizer, add_special_tokens=False)

    input_ids = render(messages, False)
    labels = [IGNORE_INDEX] * len(input_ids)
    for i, message in enumerate(messages):
        if message["role"] == "assistant":
            start = len(render(messages[:i], True))
            end = len(render(messages[: i + 1], False))
            labels[start:end] = input_ids[start:end]
    return input_ids, labels
