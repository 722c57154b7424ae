"""A throughput/memory benchmark at real size without any download: a random-init model with a known
shape (e.g. Llama-3-8B), the tiny tokenizer, and synthetic completion rows whose token lengths follow
a lognormal (mean ~350, capped at max_seq_length), as chat data does.

    python -m experiments.training prepare-benchmark OUT --shape llama-3-8b --steps 30
    python -m experiments.training --config OUT/spec.json

``prepare-benchmark`` also writes OUT/estimate.json: what experiments.training.resources predicts for
the same run, to compare with the measured result.
"""

from __future__ import annotations

import json
import math
import random
from pathlib import Path

from experiments.training.resources import (
    ASSUMED_MFU,
    GPUS,
    KNOWN_CONFIGS,
    estimate,
    model_shape,
    resolve_known,
    training_flops,
)
from experiments.training.tiny_model import _corpus_texts, build_tokenizer


def prepare_benchmark(
    out: str | Path,
    *,
    shape: str = "llama-3-8b",
    steps: int = 30,
    approach: str = "lora",
    mean_tokens: int = 350,
    max_seq_length: int = 1024,
    seed: int = 0,
    fixed_length: bool = False,
    shape_params: dict | None = None,
    save_weights: bool = False,
) -> Path:
    """Write OUT/model (config + tokenizer; random weights too with ``save_weights``, which QLoRA needs
    to quantize), OUT/train.jsonl, OUT/spec.json and OUT/estimate.json.

    ``fixed_length``: every row is max_seq_length tokens, so every batch is the worst case the memory
    estimate is for. ``shape_params``: a config dict instead of a known shape (e.g. a tiny one)."""
    from transformers import AutoConfig

    out = Path(out).resolve()
    model_dir = out / "model"
    model_dir.mkdir(parents=True, exist_ok=True)
    known = shape if shape_params else resolve_known(shape)
    if known is None:
        raise ValueError(f"--shape: unknown {shape!r}; choose one of {', '.join(KNOWN_CONFIGS)}")
    params = dict(shape_params or KNOWN_CONFIGS[known])
    tokenizer = build_tokenizer()
    config = AutoConfig.for_model(
        params.pop("model_type"),
        **params,
        max_position_embeddings=8192,
        pad_token_id=tokenizer.pad_token_id,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
    )
    config.save_pretrained(model_dir)
    tokenizer.save_pretrained(model_dir)
    if save_weights:
        import torch
        from transformers import AutoModelForCausalLM

        torch.manual_seed(seed)
        with torch.device("cuda" if torch.cuda.is_available() else "cpu"):
            model = AutoModelForCausalLM.from_config(config, dtype=torch.bfloat16)
        model.save_pretrained(model_dir)
        del model

    # Seed defaults: LoRA r16/alpha32 on q,v; batch 4 x gradient accumulation 4.
    hyperparameters = {"batch_size": 4, "gradient_accumulation": 4, "max_seq_length": max_seq_length}
    rows_needed = steps * hyperparameters["batch_size"] * hyperparameters["gradient_accumulation"]
    words = " ".join(_corpus_texts()).split()
    rng = random.Random(seed)
    tokens_per_word = len(tokenizer(" ".join(words[:2000]), add_special_tokens=False)["input_ids"]) / 2000
    sigma = 0.6
    mu = math.log(mean_tokens) - sigma**2 / 2
    lines, total_tokens = [], 0
    for _ in range(rows_needed):
        length = (
            max_seq_length
            if fixed_length
            else min(max_seq_length, max(8, int(rng.lognormvariate(mu, sigma))))
        )
        start = rng.randrange(0, len(words) - 1)
        # fixed_length: enough words to be truncated at exactly max_seq_length tokens
        count = max(1, int(length / tokens_per_word * (1.5 if fixed_length else 1)))
        text = " ".join(words[(start + i) % len(words)] for i in range(count))
        lines.append(json.dumps({"text": text}))
        total_tokens += min(length, max_seq_length)
    (out / "train.jsonl").write_text("\n".join(lines) + "\n")

    spec = {
        "job_id": f"bench-{known}-{approach}",
        "model_base": str(model_dir),
        "random_init": not save_weights,
        "approach": approach,
        "task_type": "completion",
        "hyperparameters": {**hyperparameters, "max_steps": steps, "logging_steps": 5, "epochs": 1},
        "checkpointing": {"save_steps": 10 * steps, "save_total_limit": 1, "best_only": False},
        "dataset": {"train": str(out / "train.jsonl"), "validation": None},
        "output_dir": str(out / "run"),
    }
    (out / "spec.json").write_text(json.dumps(spec, indent=2))
    from experiments.training.engine import DEFAULT_HYPERPARAMETERS

    hp = {**DEFAULT_HYPERPARAMETERS, **spec["hyperparameters"]}
    model_shape_ = model_shape(str(model_dir))
    predicted = estimate(shape=model_shape_, approach=approach, hyperparameters=hp, train_tokens=total_tokens)
    per_token = training_flops(model_shape_, approach, hp, 1.0)
    predicted["tokens_per_sec_by_gpu"] = {g[0]: round(g[2] * 1e12 * ASSUMED_MFU / per_token) for g in GPUS}
    predicted["train_tokens"] = total_tokens
    (out / "estimate.json").write_text(json.dumps(predicted, indent=2))
    return out
