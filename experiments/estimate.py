"""A first resource estimate for a config (the training issue refines it against GPU measurements).

Memory: weights + gradients + AdamW state for the trainable part + activations, by approach.
Time: training FLOPs (6·N·T for full, ≈4·N·T for adapters, which skip weight gradients) divided by
an assumed sustained throughput (peak bf16 × MFU). Cost: hours × the GPU's hourly price.
"""

from __future__ import annotations

import math
from pathlib import Path

# Parameter counts of well-known bases, so an estimate needs no download.
KNOWN_PARAMS = {
    "llama-3-8b": 8.03e9,
    "meta-llama/meta-llama-3-8b": 8.03e9,
    "llama-3.2-1b": 1.24e9,
    "meta-llama/llama-3.2-1b": 1.24e9,
    "llama-3.2-3b": 3.21e9,
    "mistral-7b": 7.24e9,
    "mistralai/mistral-7b-v0.1": 7.24e9,
    "qwen2.5-7b": 7.62e9,
    "qwen2.5-0.5b": 0.49e9,
}
# name, memory GiB, peak dense bf16 TFLOP/s, USD per hour (typical on-demand cloud price, 2026)
GPUS = [
    ("T4-16GB", 16, 65, 0.35),
    ("L4-24GB", 24, 121, 0.80),
    ("A100-40GB", 40, 312, 1.60),
    ("A100-80GB", 80, 312, 2.00),
    ("H100-80GB", 80, 989, 3.00),
    ("H200-141GB", 141, 989, 3.80),
]
ASSUMED_MFU = 0.15  # plain HF Trainer + peft with per-batch padding measured ~16 % on an H200


def count_parameters(model_path: str) -> float | None:
    known = KNOWN_PARAMS.get(model_path.lower())
    if known:
        return known
    if not (Path(model_path) / "config.json").exists():
        return None
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM

    config = AutoConfig.from_pretrained(model_path)
    with torch.device("meta"):
        model = AutoModelForCausalLM.from_config(config)
    return float(sum(p.numel() for p in model.parameters()))


def _fmt_hours(hours: float) -> str:
    if hours < 1 / 60:
        seconds = max(1, round(hours * 3600))
        return f"{seconds} second{'s' if seconds != 1 else ''}"
    if hours < 1:
        return f"{round(hours * 60)} minutes"
    return f"{hours:.1f} hours".replace(".0 hours", " hours")


def estimate_resources(
    *, params: float | None, approach: str, hyperparameters: dict, train_tokens: int
) -> dict:
    if params is None:
        return {
            "gpu_memory": "unknown",
            "training_time": "unknown",
            "estimated_cost": "unknown",
            "recommended_gpu": "unknown",
            "basis": "parameter count unknown for this base model",
        }
    bs = hyperparameters["batch_size"]
    seq = hyperparameters.get("max_seq_length", 1024)
    bytes_per_weight = {"qlora": 0.55, "full": 2, "lora": 2, "prompt_tuning": 2}.get(approach, 2)
    weights = params * bytes_per_weight
    trainable = params if approach == "full" else params * 0.005
    optimizer_and_grads = trainable * (4 + 4 + 4 + 2)  # fp32 master, two Adam moments, bf16 grad
    hidden = max(1.0, (params / 1.2e4) ** 0.5)  # rough width for a transformer of this size
    activations = bs * seq * hidden * 34 * 2 * max(1.0, math.log2(params / 1e8 + 1))
    total_gib = (weights + optimizer_and_grads + activations) / 2**30 * 1.1 + 0.5
    epochs = hyperparameters["epochs"]
    flops = (6 if approach == "full" else 4) * params * train_tokens * epochs
    fitting = [g for g in GPUS if g[1] >= total_gib] or [GPUS[-1]]
    name, _, tflops, price = fitting[0]
    hours = flops / (tflops * 1e12 * ASSUMED_MFU) / 3600
    return {
        "gpu_memory": f"{math.ceil(total_gib)}GB",
        "training_time": _fmt_hours(hours),
        "estimated_cost": f"${hours * price:.2f}",
        "recommended_gpu": name,
        "basis": f"{params / 1e9:.3g}B params, {train_tokens} train tokens × {epochs} epochs, "
        f"{int(ASSUMED_MFU * 100)}% MFU assumed",
    }
