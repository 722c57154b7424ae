"""Which way is better for a metric, by its key: the runs table, compare deltas and charts colour a
change green only when it is an improvement (a drop in loss, a rise in accuracy or tokens/s)."""

from __future__ import annotations

# Whole keys or key parts (split on "_", "/", "."): lower is better.
LOWER = frozenset({"loss", "perplexity", "nll", "error", "wer", "cer", "eta", "seconds", "time", "latency"})
# Higher is better; anything in neither (learning_rate, grad_norm, epoch, memory) has no direction.
HIGHER = frozenset({
    "accuracy", "acc", "f1", "precision", "recall", "bleu", "rouge1", "rouge2", "rougel", "rougelsum",
    "exact", "match", "bertscore", "tokens", "samples", "throughput", "reward", "score",
})  # fmt: skip
NEUTRAL = frozenset({"learning_rate", "lr", "grad_norm", "epoch", "step", "gpu_memory", "memory"})


def metric_direction(key: str) -> str | None:
    """'lower', 'higher' or None (no better side: learning rate, gradient norm, memory, ...)."""
    name = key.lower()
    if name in NEUTRAL or any(name.startswith(n) for n in ("gpu_", "learning_rate", "grad_")):
        return None
    parts = set(name.replace("/", "_").replace(".", "_").split("_"))
    if parts & LOWER:
        return "lower"
    if parts & HIGHER or name.startswith("rouge"):
        return "higher"
    return None


def delta_trend(key: str, delta: float | None) -> str:
    """'better', 'worse' or '' for a change of `delta` in metric `key`."""
    direction = metric_direction(key)
    if delta is None or delta == 0 or direction is None:
        return ""
    improved = delta < 0 if direction == "lower" else delta > 0
    return "better" if improved else "worse"
