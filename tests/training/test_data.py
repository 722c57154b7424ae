from __future__ import annotations

import json
from pathlib import Path

import pytest
from transformers import AutoTokenizer

from experiments.training.data import IGNORE_INDEX, load_split, tokenize_dataset, tokenize_row
from experiments.training.tiny_model import CORPUS_DIR

KNOWLEDGE_CHAT = CORPUS_DIR / "knowledge_chat.jsonl"

CONVERSATION = {
    "messages": [
        {"role": "system", "content": "Answer briefly."},
        {"role": "user", "content": "Capital of France?"},
        {"role": "assistant", "content": "Paris."},
        {"role": "user", "content": "And of Japan?"},
        {"role": "assistant", "content": "Tokyo."},
    ]
}


@pytest.fixture(scope="module")
def tokenizer(tiny_model_dir: Path):
    return AutoTokenizer.from_pretrained(tiny_model_dir)


def _labelled_text(tokenizer, row: dict[str, list[int]]) -> str:
    return tokenizer.decode(
        [t for t, label in zip(row["input_ids"], row["labels"], strict=True) if label != IGNORE_INDEX]
    )


def test_chat_labels_only_assistant_tokens(tokenizer) -> None:
    row = tokenize_row(CONVERSATION, tokenizer, task_type="chat", max_seq_length=512)

    assert _labelled_text(tokenizer, row) == "Paris.<|eos|>Tokyo.<|eos|>"
    assert all(
        label in (IGNORE_INDEX, token) for token, label in zip(row["input_ids"], row["labels"], strict=True)
    )
    assert tokenizer.decode(row["input_ids"]).startswith("<|bos|><|system|>")


def test_chat_labels_without_generation_tags(tokenizer) -> None:
    # given a template like most hub models have: no {% generation %} markers
    plain = AutoTokenizer.from_pretrained(tokenizer.name_or_path)
    plain.chat_template = plain.chat_template.replace("{% generation %}", "").replace(
        "{% endgeneration %}", ""
    )

    row = tokenize_row(CONVERSATION, plain, task_type="chat", max_seq_length=512)

    assert _labelled_text(plain, row) == "Paris.<|eos|>\nTokyo.<|eos|>\n"


def test_instruction_and_completion_mask_the_prompt(tokenizer) -> None:
    instruction = tokenize_row(
        {"instruction": "Name the capital.", "input": "France", "output": "Paris."},
        tokenizer,
        task_type="instruction",
        max_seq_length=512,
    )
    completion = tokenize_row(
        {"prompt": "The capital of France is", "completion": " Paris."},
        tokenizer,
        task_type="completion",
        max_seq_length=512,
    )
    text = tokenize_row(
        {"text": "Water boils at one hundred degrees."}, tokenizer, task_type="completion", max_seq_length=4
    )

    assert _labelled_text(tokenizer, instruction) == "Paris.<|eos|>"
    assert "### Input:\nFrance" in tokenizer.decode(instruction["input_ids"])
    assert _labelled_text(tokenizer, completion) == " Paris.<|eos|>"
    assert len(text["input_ids"]) == 4 and text["labels"] == text["input_ids"]


def test_bad_row_names_its_row_number(tmp_path: Path, tokenizer) -> None:
    path = tmp_path / "bad.jsonl"
    rows = [{"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"}]}] * 2
    rows.append({"messages": [{"role": "user", "content": "no answer"}]})
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))

    with pytest.raises(ValueError, match="row 3"):
        tokenize_dataset(load_split(path), tokenizer, task_type="chat", max_seq_length=64)
    with pytest.raises(ValueError, match="row 1: an instruction row"):
        tokenize_row({"prompt": "x"}, tokenizer, task_type="instruction", max_seq_length=64)


def test_knowledge_chat_tokenises_and_truncates(tokenizer) -> None:
    dataset = tokenize_dataset(load_split(KNOWLEDGE_CHAT), tokenizer, task_type="chat", max_seq_length=48)

    assert len(dataset) > 40  # rows whose answer is cut off entirely are dropped
    assert max(len(ids) for ids in dataset["input_ids"]) <= 48


def test_unsupported_file_type(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="unsupported file type"):
        load_split(tmp_path / "data.csv")
