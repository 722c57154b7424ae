"""Resource estimates for configs: the engine's shape-based model (experiments.training.resources)
with the platform's price table (settings.GPU_PRICES overrides/extends the built-in GPU list).

`estimate_for(model_base=..., ...)` is the one to call (through services.resource_estimate for drafts).
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

from django.conf import settings

from experiments.training import resources
from experiments.training.resources import GPUS


def gpu_table() -> list[tuple[str, float, float, float]]:
    """Built-in GPUs with settings.GPU_PRICES applied (a price for an unknown name is ignored)."""
    prices = getattr(settings, "GPU_PRICES", {}) or {}
    return [(name, mem, tflops, prices.get(name, price)) for name, mem, tflops, price in GPUS]


@lru_cache(maxsize=64)
def _shape(model_base: str, task_type: str) -> resources.ModelShape | None:
    # Building a meta model imports torch once (seconds); configs and forms ask many times.
    return resources.model_shape(model_base, task_type)


def model_shape_for(model_base: str, task_type: str = "chat") -> resources.ModelShape | None:
    """The shapes estimates use for ``model_base`` (a local folder's config.json, or the known-shape
    table), cached; None when neither knows it."""
    key = model_base
    if (Path(model_base) / "config.json").is_file():
        key = str(Path(model_base).resolve())
    return _shape(key, task_type if task_type == "classification" else "chat")


def estimate_for(
    *,
    model_base: str,
    approach: str,
    hyperparameters: dict,
    train_tokens: int,
    task_type: str = "chat",
    workers: list[dict] | None = None,
) -> dict:
    """The seed's ResourceEstimate from the model's real shapes (a local folder's config.json, or the
    known-shape table for a hub id that is not available here). ``workers``: registered_workers(), so
    that the time is for a device the platform has (None: the plan's GPU)."""
    return resources.estimate(
        shape=model_shape_for(model_base, task_type),
        approach=approach,
        hyperparameters=hyperparameters,
        train_tokens=train_tokens,
        gpus=gpu_table(),
        task_type=task_type,
        workers=workers,
    )


def registered_workers() -> list[dict] | None:
    """The workers that are not lost — name, GPUs and ``throughput`` (their measured tokens/s rows:
    size_class, approach, device, tokens_per_sec, samples) — or None when none is registered (the
    estimate then quotes the plan's GPU). Time estimates use the device a registered worker would run
    the job on, at its measured speed when it has one for the model's size class and approach."""
    from datetime import timedelta

    from django.utils import timezone

    from experiments.models import Worker, WorkerStatus, WorkerThroughput

    fresh = timezone.now() - timedelta(seconds=settings.HEARTBEAT_TIMEOUT)
    rows = list(
        Worker.objects.exclude(status=WorkerStatus.LOST)
        .filter(last_heartbeat_at__gte=fresh)
        .values("pk", "name", "gpu_name", "gpu_count", "gpu_memory_total_mb")
    )
    if not rows:
        return None
    measured: dict[int, list[dict]] = {}
    for row in WorkerThroughput.objects.filter(worker__in=[r["pk"] for r in rows]).values(
        "worker_id", "size_class", "approach", "device", "tokens_per_sec", "samples"
    ):
        measured.setdefault(row.pop("worker_id"), []).append(row)
    for row in rows:
        row["throughput"] = measured.get(row.pop("pk"), [])
    return rows
