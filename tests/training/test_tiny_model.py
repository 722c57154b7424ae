from __future__ import annotations

import json
from pathlib import Path

from transformers import AutoModelForCausalLM, AutoTokenizer

from experiments.training.tiny_model import build_tiny_model

MESSAGES = [
    {"role": "system", "content": "Answer briefly."},
    {"role": "user", "content": "What port does the T4DM dashboard use?"},
    {"role": "assistant", "content": "Port 8000."},
]


def _files(directory: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(directory.iterdir())}


def test_build_is_deterministic(tmp_path: Path, tiny_model_dir: Path) -> None:
    # when
    again = build_tiny_model(tmp_path / "again", seed=0)
    other_seed = build_tiny_model(tmp_path / "other", seed=1)

    # then
    assert _files(again) == _files(tiny_model_dir)
    assert _files(other_seed)["model.safetensors"] != _files(tiny_model_dir)["model.safetensors"]
    assert _files(other_seed)["tokenizer.json"] == _files(tiny_model_dir)["tokenizer.json"]
    assert json.loads((other_seed / "t4dm_tiny.json").read_text())["seed"] == 1


def test_it_loads_back_with_auto_classes(tiny_model_dir: Path) -> None:
    tokenizer = AutoTokenizer.from_pretrained(tiny_model_dir)
    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir)

    assert model.config.model_type == "llama"
    assert model.config.hidden_size == 64 and model.config.num_hidden_layers == 2
    assert model.get_input_embeddings().num_embeddings == len(tokenizer)
    assert (tokenizer.pad_token, tokenizer.bos_token, tokenizer.eos_token) == (
        "<|pad|>",
        "<|bos|>",
        "<|eos|>",
    )
    assert {"<|system|>", "<|user|>", "<|assistant|>"} <= set(tokenizer.all_special_tokens)


def test_chat_template_round_trip(tiny_model_dir: Path) -> None:
    tokenizer = AutoTokenizer.from_pretrained(tiny_model_dir)

    text = tokenizer.apply_chat_template(MESSAGES, tokenize=False)
    prompt = tokenizer.apply_chat_template(MESSAGES[:2], tokenize=False, add_generation_prompt=True)
    ids = tokenizer(text, add_special_tokens=False)["input_ids"]

    assert text == (
        "<|bos|><|system|>\nAnswer briefly.<|eos|>\n<|user|>\nWhat port does the T4DM dashboard use?<|eos|>\n"
        "<|assistant|>\nPort 8000.<|eos|>\n"
    )
    assert prompt.endswith("<|assistant|>\n") and text.startswith(prompt)
    assert tokenizer.decode(ids) == text
    assert ids.count(tokenizer.convert_tokens_to_ids("<|assistant|>")) == 1
