"""Prompt tuning trains padding-free like LoRA (issue 20 item 3, "prompt tuning estimated below LoRA"):
each packed sample carries its own copy of the learned prompt, so the packed loss and the prompt's
gradient equal peft's padded prompt tuning on the same samples, and a packed run follows the padded
run step by step."""

from __future__ import annotations

import copy

import pytest
import torch
from peft import PromptTuningConfig, PromptTuningInit, TaskType, get_peft_model
from transformers import AutoModelForCausalLM, AutoTokenizer, DataCollatorForSeq2Seq

from experiments.training.data import IGNORE_INDEX, load_split, tokenize_dataset
from experiments.training.engine import train
from experiments.training.packing import (
    FinalHiddenState,
    PackedCollator,
    base_causal_lm,
    chunked_causal_lm_loss,
    pack_prompt_tuning,
    split_packed_batch,
)
from experiments.training.reporter import MemoryReporter
from tests.training.conftest import KNOWLEDGE_CHAT

VIRTUAL = 7


@pytest.fixture
def prompt_model_and_rows(tiny_model_dir):
    torch.manual_seed(0)
    tokenizer = AutoTokenizer.from_pretrained(tiny_model_dir)
    base = AutoModelForCausalLM.from_pretrained(
        tiny_model_dir, dtype=torch.float32, attn_implementation="sdpa"
    )
    config = PromptTuningConfig(
        task_type=TaskType.CAUSAL_LM, num_virtual_tokens=VIRTUAL, prompt_tuning_init=PromptTuningInit.RANDOM
    )
    model = get_peft_model(base, config)
    rows = tokenize_dataset(load_split(str(KNOWLEDGE_CHAT)), tokenizer, task_type="chat", max_seq_length=128)
    picked = sorted(range(len(rows)), key=lambda i: len(rows[i]["input_ids"]))
    features = [rows[i] for i in (picked[0], picked[len(picked) // 2], picked[-1], picked[3])]
    assert len({len(f["input_ids"]) for f in features}) > 2
    return model, tokenizer, features


def _padded(model, tokenizer, features):
    """peft's own prompt tuning over a padded batch (the engine's path with packing off)."""
    batch = DataCollatorForSeq2Seq(tokenizer, padding=True, label_pad_token_id=IGNORE_INDEX)(
        [{k: f[k] for k in ("input_ids", "attention_mask", "labels")} for f in features]
    )
    assert (batch["attention_mask"] == 0).any()
    return model(**batch).loss


def _packed(model, features):
    batch = PackedCollator(varlen_kwargs=False, virtual_tokens=VIRTUAL)(features)
    assert batch["input_ids"].shape[0] == 1
    hidden = FinalHiddenState(base_causal_lm(model))
    try:
        labels = batch.pop("labels")
        model(**batch)
        return chunked_causal_lm_loss(hidden.take(), hidden.head, labels, chunk_tokens=37)
    finally:
        hidden.remove()


def _prompt_grad(model):
    return model.prompt_encoder["default"].embedding.weight.grad.clone()


def test_packed_prompt_tuning_equals_peft_padded_prompt_tuning(prompt_model_and_rows):
    model, tokenizer, features = prompt_model_and_rows
    padded_model = copy.deepcopy(model)  # peft's forward; the other gets the packed forward
    assert pack_prompt_tuning(model) == VIRTUAL

    padded = _padded(padded_model, tokenizer, features)
    padded.backward()
    packed = _packed(model, features)
    packed.backward()

    assert abs(packed.item() - padded.item()) < 1e-5
    torch.testing.assert_close(_prompt_grad(model), _prompt_grad(padded_model), atol=1e-5, rtol=1e-4)
    # only the prompt learns; the base stays frozen
    assert [n for n, p in model.named_parameters() if p.grad is not None] == [
        "prompt_encoder.default.embedding.weight"
    ]


def test_every_packed_sample_starts_with_the_prompt_and_the_budget_counts_it(prompt_model_and_rows):
    _, _, features = prompt_model_and_rows
    batch = PackedCollator(varlen_kwargs=False, virtual_tokens=VIRTUAL)(features)
    positions = batch["position_ids"][0]
    starts = (positions == 0).nonzero().flatten().tolist()
    assert len(starts) == len(features)
    for start, feature in zip(starts, features, strict=True):
        assert positions[start : start + VIRTUAL].tolist() == list(range(VIRTUAL))
        assert (batch["labels"][0, start : start + VIRTUAL] == IGNORE_INDEX).all()
        assert batch["input_ids"][0, start + VIRTUAL] == feature["input_ids"][0]
    budget = max(len(f["input_ids"]) for f in features) + VIRTUAL
    for part in split_packed_batch(batch, budget):
        assert part["input_ids"].shape[1] <= budget


def test_a_packed_prompt_tuning_run_follows_the_padded_run(make_spec, tmp_path):
    runs = {}
    for packing in (True, False):
        reporter = MemoryReporter()
        spec = make_spec(
            approach="prompt_tuning",
            hyperparameters={
                "packing": packing,
                "max_steps": 8,
                "learning_rate": 3e-2,
                "num_virtual_tokens": 8,
            },
            output_dir=str(tmp_path / f"run-{packing}"),
        )
        result = train(spec, reporter)
        runs[packing] = (reporter.values("loss"), result, reporter)
    packed, padded = runs[True][0], runs[False][0]
    assert len(packed) == 8
    assert max(abs(a - b) for a, b in zip(packed, padded, strict=True)) < 1e-3, (packed, padded)
    assert any("padding-free" in line for line in runs[True][2].messages)
    assert not any("padding-free" in line for line in runs[False][2].messages)
    assert runs[True][1]["tokens_per_sec"] > 0
