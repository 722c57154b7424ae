"""Memory-lean full fine-tuning: which weights/optimizer recipe a full fine-tune trains with.

No Django here. The engine calls ``install_full_recipe(trainer, spec, ...)`` once, after the Trainer is
built and before ``trainer.train()``; it returns the recipe's name, which goes into the job's result
and log.

Recipes (hyperparameter ``full_recipe``):
- ``fp32_master``: fp32 weights under bf16 autocast + AdamW with fp32 moments (the engine's classic
  path): 4 (weight) + 4 (grad) + 8 (moments) = 16 bytes per parameter, plus autocast's bf16 copies.
- ``bf16_kahan``: bf16 weights and bf16 moments, AdamW with Kahan-compensated updates
  (``optimi.AdamW(kahan_sum=True)`` from torch-optimi): 2 + 2 + 4 + 2 (compensation) = 10 bytes per
  parameter. Plain bf16 AdamW loses every update smaller than half a bf16 ulp of its weight (a weight
  of 1.0 ignores updates below 0.004, i.e. every step at lr 2e-5); the compensation buffer keeps what
  rounding dropped and adds it back on the next step, so the weights follow fp32 training
  (tests/training/test_lean_recipe.py measures the gap; docs/training.md has the numbers).
- ``adamw_8bit``: fp32 weights (as ``fp32_master``) with bitsandbytes' block-wise 8-bit AdamW
  moments: 4 + 4 + 2 = 10 bytes per parameter. Needs bitsandbytes with a CUDA device.
- ``auto`` (default): ``fp32_master`` unless this is a full fine-tune on a GPU whose memory the
  fp32-master estimate (experiments/training/resources.py) does not fit, then ``bf16_kahan``.

Lean recipes also turn on activation checkpointing when the estimate without it does not fit.
Optimizer offload (moments in host memory) is not implemented: see docs/training.md.
"""

from __future__ import annotations

from typing import Any

import torch

FULL_RECIPES = ("auto", "fp32_master", "bf16_kahan", "adamw_8bit")
LEAN_RECIPES = ("bf16_kahan", "adamw_8bit")
# Fraction of the GPU's memory a plan may use (the allocator's fragmentation and the CUDA context).
GPU_MEMORY_HEADROOM = 0.92


def check_full_recipe(value: Any) -> str:
    """The hyperparameter's value, or a ValueError naming the field."""
    if value not in FULL_RECIPES:
        raise ValueError(
            f"hyperparameters.full_recipe: unknown {value!r}; choose one of {', '.join(FULL_RECIPES)}"
        )
    return str(value)


def optimi_available() -> bool:
    try:
        import optimi  # noqa: F401
    except ImportError:
        return False
    return True


def bnb_8bit_available() -> bool:
    if not torch.cuda.is_available():
        return False
    try:
        import bitsandbytes.optim  # noqa: F401
    except ImportError:
        return False
    return True


def choose_full_recipe(
    requested: str,
    *,
    approach: str,
    on_gpu: bool,
    fp32_bytes: float | None = None,
    gpu_bytes: float | None = None,
) -> str | None:
    """The recipe a job trains with: None for adapter approaches (their base is frozen), the requested
    one when it is not "auto", else fp32 masters unless their estimate (``fp32_bytes``) exceeds the
    GPU's usable memory (``gpu_bytes``)."""
    requested = check_full_recipe(requested)
    if approach != "full":
        return None
    if requested != "auto":
        return requested
    if not on_gpu or fp32_bytes is None or gpu_bytes is None:
        return "fp32_master"
    return "fp32_master" if fp32_bytes <= gpu_bytes * GPU_MEMORY_HEADROOM else "bf16_kahan"


def optimizer_cls_and_kwargs(
    recipe: str,
    *,
    lr: float,
    weight_decay: float = 0.0,
    betas: tuple[float, float] = (0.9, 0.999),
    eps: float = 1e-8,
) -> tuple[type[torch.optim.Optimizer], dict[str, Any]] | None:
    """The optimizer class and keyword arguments for a lean recipe (HF Trainer's
    ``optimizer_cls_and_kwargs``); None for ``fp32_master`` (the Trainer's own AdamW)."""
    if recipe == "bf16_kahan":
        if not optimi_available():
            raise ValueError(
                "hyperparameters.full_recipe: bf16_kahan needs the torch-optimi package on the worker "
                "(pip install torch-optimi)"
            )
        from optimi import AdamW

        # optimi's weight decay is PyTorch's (lr × weight_decay) unless decouple_lr is set.
        return AdamW, {
            "lr": lr,
            "betas": betas,
            "eps": eps,
            "weight_decay": weight_decay,
            "kahan_sum": True,
        }
    if recipe == "adamw_8bit":
        if not bnb_8bit_available():
            raise ValueError(
                "hyperparameters.full_recipe: adamw_8bit needs bitsandbytes and a CUDA GPU on the worker"
            )
        from bitsandbytes.optim import AdamW8bit

        return AdamW8bit, {"lr": lr, "betas": betas, "eps": eps, "weight_decay": weight_decay}
    return None


def lean_weights(model: torch.nn.Module, recipe: str) -> None:
    """Cast the trainable weights of ``model`` to the recipe's storage dtype (in place)."""
    if recipe == "bf16_kahan":
        model.to(torch.bfloat16)


def fp32_master_bytes(model: torch.nn.Module, hp: dict[str, Any], *, gradient_checkpointing: bool) -> float:
    """Estimated peak bytes of a full fine-tune of ``model`` with fp32 masters (resources.py)."""
    from experiments.training.resources import memory_breakdown, shape_from_config

    config = getattr(model, "config", None)
    if config is None:
        return 0.0
    shape = shape_from_config(config, source="the loaded model")
    hp = {**hp, "gradient_checkpointing": gradient_checkpointing}
    return float(sum(memory_breakdown(shape, "full", hp).values()))


def install_full_recipe(
    trainer: Any, spec: dict[str, Any], *, on_gpu: bool, reporter: Any = None
) -> str | None:
    """Pick the full fine-tune's recipe for ``trainer`` (an HF Trainer not yet trained) and install it:
    weights cast, optimizer class set, activation checkpointing turned on where needed. Returns the
    recipe's name (None for adapter approaches)."""
    hp = spec["hyperparameters"]
    model = trainer.model
    fp32_bytes = gpu_bytes = None
    if spec["approach"] == "full" and on_gpu and hp.get("full_recipe", "auto") == "auto":
        gpu_bytes = float(torch.cuda.get_device_properties(torch.cuda.current_device()).total_memory)
        fp32_bytes = fp32_master_bytes(
            model, hp, gradient_checkpointing=bool(hp.get("gradient_checkpointing"))
        )
    recipe = choose_full_recipe(
        hp.get("full_recipe", "auto"),
        approach=spec["approach"],
        on_gpu=on_gpu,
        fp32_bytes=fp32_bytes,
        gpu_bytes=gpu_bytes,
    )
    if recipe is None or recipe == "fp32_master":
        if recipe and reporter is not None:
            reporter.log("full fine-tune recipe: fp32_master (fp32 weights, AdamW)")
        return recipe
    args = trainer.args
    chosen = optimizer_cls_and_kwargs(
        recipe,
        lr=args.learning_rate,
        weight_decay=args.weight_decay,
        betas=(args.adam_beta1, args.adam_beta2),
        eps=args.adam_epsilon,
    )
    lean_weights(model, recipe)
    trainer.optimizer_cls_and_kwargs = chosen
    checkpointing = bool(hp.get("gradient_checkpointing"))
    if on_gpu and not checkpointing and hasattr(model, "gradient_checkpointing_enable"):
        gpu_bytes = gpu_bytes or float(
            torch.cuda.get_device_properties(torch.cuda.current_device()).total_memory
        )
        from experiments.training.resources import memory_breakdown, shape_from_config

        shape = shape_from_config(model.config, source="the loaded model")
        lean = float(sum(memory_breakdown(shape, "full", {**hp, "full_recipe": recipe}).values()))
        if lean > gpu_bytes * GPU_MEMORY_HEADROOM:
            model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
            checkpointing = True
    if reporter is not None:
        reporter.log(
            f"full fine-tune recipe: {recipe} ({chosen[0].__module__}.{chosen[0].__name__}, "
            f"weights {next(model.parameters()).dtype}, activation checkpointing {checkpointing})"
        )
    return recipe
