"""Padding-free batches are exact: the packed loss and gradients equal the padded ones on the same
samples, no token attends across samples, and a packed run converges like a padded run."""

from __future__ import annotations

import pytest
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer, DataCollatorForSeq2Seq

from experiments.training.data import IGNORE_INDEX, load_split, tokenize_dataset
from experiments.training.engine import train
from experiments.training.packing import (
    FinalHiddenState,
    PackedCollator,
    chunked_causal_lm_loss,
    split_packed_batch,
)
from experiments.training.reporter import MemoryReporter
from tests.training.conftest import KNOWLEDGE_CHAT


@pytest.fixture
def model_and_rows(tiny_model_dir):
    torch.manual_seed(0)
    tokenizer = AutoTokenizer.from_pretrained(tiny_model_dir)
    model = AutoModelForCausalLM.from_pretrained(
        tiny_model_dir, dtype=torch.float32, attn_implementation="sdpa"
    )
    rows = tokenize_dataset(load_split(str(KNOWLEDGE_CHAT)), tokenizer, task_type="chat", max_seq_length=128)
    # Samples of different lengths, so the padded batch really pads.
    picked = sorted(range(len(rows)), key=lambda i: len(rows[i]["input_ids"]))
    features = [rows[i] for i in (picked[0], picked[len(picked) // 2], picked[-1], picked[3])]
    assert len({len(f["input_ids"]) for f in features}) > 2
    return model, tokenizer, features


def _padded_loss(model, tokenizer, features, num_items=None):
    batch = DataCollatorForSeq2Seq(tokenizer, padding=True, label_pad_token_id=IGNORE_INDEX)(
        [{k: f[k] for k in ("input_ids", "attention_mask", "labels")} for f in features]
    )
    assert (batch["attention_mask"] == 0).any()
    return model(**batch, num_items_in_batch=num_items).loss


def _packed_loss(model, features, num_items=None):
    batch = PackedCollator(varlen_kwargs=False)(features)
    assert batch["input_ids"].shape[0] == 1  # one row, no padding
    hidden = FinalHiddenState(model)
    try:
        labels = batch.pop("labels")
        model(**batch)
        return chunked_causal_lm_loss(
            hidden.take(), hidden.head, labels, num_items_in_batch=num_items, chunk_tokens=37
        )
    finally:
        hidden.remove()


def test_packed_loss_equals_padded_loss(model_and_rows) -> None:
    model, tokenizer, features = model_and_rows
    padded = _padded_loss(model, tokenizer, features)
    packed = _packed_loss(model, features)
    assert abs(packed.item() - padded.item()) < 1e-5
    # With the Trainer's gradient-accumulation normaliser (sum / items over the whole step) as well.
    padded_sum = _padded_loss(model, tokenizer, features, num_items=torch.tensor(1000))
    packed_sum = _packed_loss(model, features, num_items=torch.tensor(1000))
    assert abs(packed_sum.item() - padded_sum.item()) < 1e-5


def test_packed_gradients_equal_padded_gradients(model_and_rows) -> None:
    model, tokenizer, features = model_and_rows
    _padded_loss(model, tokenizer, features).backward()
    padded = {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}
    model.zero_grad(set_to_none=True)
    _packed_loss(model, features).backward()
    packed = {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}
    assert padded.keys() == packed.keys() and len(padded) > 10
    for name, grad in padded.items():
        torch.testing.assert_close(packed[name], grad, atol=1e-5, rtol=1e-4, msg=name)


def test_no_token_attends_across_samples(model_and_rows) -> None:
    """A sample's hidden states are the same alone and packed after another sample."""
    model, _, features = model_and_rows
    hidden = FinalHiddenState(model)
    try:
        model(
            **{k: v for k, v in PackedCollator(varlen_kwargs=False)([features[1]]).items() if k != "labels"}
        )
        alone = hidden.take()
        model(**{k: v for k, v in PackedCollator(varlen_kwargs=False)(features[:2]).items() if k != "labels"})
        packed = hidden.take()
    finally:
        hidden.remove()
    first = len(features[0]["input_ids"])
    torch.testing.assert_close(packed[:, first:], alone, atol=1e-5, rtol=1e-4)


def test_packed_run_converges_like_the_padded_run(make_spec, tmp_path) -> None:
    runs = {}
    for packing in (True, False):
        reporter = MemoryReporter()
        spec = make_spec(
            hyperparameters={"packing": packing, "max_steps": 16, "learning_rate": 1e-2},
            output_dir=str(tmp_path / f"run-{packing}"),
        )
        result = train(spec, reporter)
        runs[packing] = (reporter.values("loss"), result, reporter)
    packed, padded = runs[True][0], runs[False][0]
    assert len(packed) == 16 and sum(packed[-3:]) / 3 < packed[0] - 0.5, packed
    # Same samples, same order, same normalisation: the curves agree step by step (float rounding only).
    assert max(abs(a - b) for a, b in zip(packed, padded, strict=True)) < 1e-3
    assert any("padding-free" in line for line in runs[True][2].messages)
    assert runs[True][1]["tokens_per_sec"] > 0


def test_packing_is_refused_where_it_does_not_apply(make_spec) -> None:
    with pytest.raises(ValueError, match="hyperparameters.packing"):
        # classification keeps padded batches (prompt tuning packs: test_packing_prompt_tuning.py)
        train(make_spec(task_type="classification", hyperparameters={"packing": True}), MemoryReporter())
    with pytest.raises(ValueError, match="hyperparameters.packing"):
        train(make_spec(hyperparameters={"packing": "yes"}), MemoryReporter())


def test_split_packed_batch_cuts_at_sample_boundaries_within_the_budget(model_and_rows) -> None:
    _, _, features = model_and_rows
    batch = PackedCollator(varlen_kwargs=True)(features)
    lengths = [len(f["input_ids"]) for f in features]
    budget = max(lengths) + 1
    parts = split_packed_batch(batch, budget)
    assert len(parts) > 1
    assert torch.equal(torch.cat([p["input_ids"] for p in parts], dim=1), batch["input_ids"])
    assert torch.equal(torch.cat([p["labels"] for p in parts], dim=1), batch["labels"])
    for part in parts:
        size = part["input_ids"].shape[1]
        assert size <= budget
        assert part["position_ids"][0, 0] == 0  # each micro-batch starts with a whole sample
        assert part["cu_seq_lens_q"][-1] == size and part["cu_seq_lens_q"][0] == 0
        assert part["max_length_q"] == max(torch.diff(part["cu_seq_lens_q"]).tolist())
        assert part["logits_to_keep"] == 1
    assert split_packed_batch(batch, sum(lengths)) == [batch]


def test_packed_micro_batches_match_padded_gradient_accumulation(make_spec, tmp_path) -> None:
    """batch 2 × accumulation 3, packed and split by a small token budget: the same losses as padded."""
    curves = {}
    for packing, budget in ((True, 128), (False, None)):
        reporter = MemoryReporter()
        hp = {
            "packing": packing,
            "max_steps": 4,
            "batch_size": 2,
            "gradient_accumulation": 3,
            "max_seq_length": 128,
            "micro_batch_tokens": budget,
        }
        train(make_spec(hyperparameters=hp, output_dir=str(tmp_path / f"ga-{packing}")), reporter)
        curves[packing] = reporter.values("loss")
    assert len(curves[True]) == 4
    assert max(abs(a - b) for a, b in zip(curves[True], curves[False], strict=True)) < 1e-4
