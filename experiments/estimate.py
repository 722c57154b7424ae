"""Resource estimates for configs: the engine's shape-based model (experiments.training.resources)
with the platform's price table (settings.GPU_PRICES overrides/extends the built-in GPU list).

`estimate_for(model_base=..., ...)` is the one to call. `estimate_resources(params=...)` and
`count_parameters` remain for callers that only have a parameter count (a rough estimate).
"""

from __future__ import annotations

import math
from functools import lru_cache
from pathlib import Path

from django.conf import settings

from experiments.training import resources
from experiments.training.resources import ASSUMED_MFU, GPUS, fmt_hours

# Parameter counts of the known bases (the fallback table, for ids not available locally).
KNOWN_PARAMS = {
    "llama-3-8b": 8.03e9,
    "llama-3.2-1b": 1.24e9,
    "llama-3.2-3b": 3.21e9,
    "mistral-7b": 7.24e9,
    "qwen2.5-7b": 7.62e9,
    "qwen2.5-0.5b": 0.49e9,
}


def gpu_table() -> list[tuple[str, int, float, float]]:
    """Built-in GPUs with settings.GPU_PRICES applied (a price for an unknown name is ignored)."""
    prices = getattr(settings, "GPU_PRICES", {}) or {}
    return [(name, mem, tflops, prices.get(name, price)) for name, mem, tflops, price in GPUS]


@lru_cache(maxsize=64)
def _shape(model_base: str, task_type: str) -> resources.ModelShape | None:
    # Building a meta model imports torch once (seconds); configs and forms ask many times.
    return resources.model_shape(model_base, task_type)


def estimate_for(
    *, model_base: str, approach: str, hyperparameters: dict, train_tokens: int, task_type: str = "chat"
) -> dict:
    """The seed's ResourceEstimate from the model's real shapes (a local folder's config.json, or the
    known-shape table for a hub id that is not available here)."""
    key = model_base
    if (Path(model_base) / "config.json").is_file():
        key = str(Path(model_base).resolve())
    return resources.estimate(
        shape=_shape(key, task_type if task_type == "classification" else "chat"),
        approach=approach,
        hyperparameters=hyperparameters,
        train_tokens=train_tokens,
        gpus=gpu_table(),
    )


def count_parameters(model_path: str) -> float | None:
    shape = _shape(model_path, "chat")
    return float(shape.total_params) if shape else None


def estimate_resources(
    *,
    params: float | None,
    approach: str,
    hyperparameters: dict,
    train_tokens: int,
) -> dict:
    """A rough estimate from a parameter count alone (no shapes): prefer estimate_for."""
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
    bytes_per_weight = {"qlora": 0.55, "full": 4, "lora": 2, "prompt_tuning": 2}.get(approach, 2)
    weights = params * bytes_per_weight
    trainable = params if approach == "full" else params * 0.005
    optimizer_and_grads = trainable * 12
    hidden = max(1.0, (params / 1.2e4) ** 0.5)  # rough width for a transformer of this size
    activations = bs * seq * hidden * 34 * 2 * max(1.0, math.log2(params / 1e8 + 1))
    total_gib = (weights + optimizer_and_grads + activations) / 2**30 * 1.1 + 0.5
    epochs = hyperparameters["epochs"]
    flops = (6 if approach == "full" else 4) * params * train_tokens * epochs
    gpus = gpu_table()
    fitting = [g for g in gpus if g[1] >= total_gib] or [gpus[-1]]
    name, _, tflops, price = fitting[0]
    hours = flops / (tflops * 1e12 * ASSUMED_MFU) / 3600
    return {
        "gpu_memory": f"{math.ceil(total_gib)}GB",
        "training_time": fmt_hours(hours),
        "estimated_cost": f"${hours * price:.2f}",
        "recommended_gpu": name,
        "basis": f"{params / 1e9:.3g}B params (count only), {train_tokens} train tokens × {epochs} epochs",
    }
