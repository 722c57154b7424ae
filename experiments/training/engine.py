"""The training engine: ``train(spec, reporter)`` runs one fine-tuning job with HF Trainer (+ peft).

The job arrives as a dict (the worker's spec, experiments.services.job_spec_for_worker); it is read
with the typed training spec the platform also validates configs with (experiments/training/spec.py),
then checked against this machine (files, CUDA, packages, the model's shapes) and run by the recipe
for its task family (experiments/training/recipes/: causal LM, classification) on the shared
components (experiments/training/components.py).

No Django here: the platform sees the run only through the ``Reporter`` it passes in.
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path
from typing import Any

import torch

from experiments.training.components import ReporterCallback, training_arguments
from experiments.training.modeling import (
    bitsandbytes_available,
    check_target_modules,
    is_local_model,
    meta_model,
)
from experiments.training.recipes import recipe_for
from experiments.training.recipes.causal_lm import PackedLoss, PackedTrainer, compile_decoder_layers
from experiments.training.reporter import Reporter
from experiments.training.spec import (
    ADAPTER_APPROACHES,
    DEVICES,
    EARLY_STOPPING_METRICS,
    SWITCHES,
    Checkpointing,
    EarlyStopping,
    Hyperparameters,
    SpecError,
    TrainingSpec,
    check_model_limits,
    model_config_read,
)

# The engine's defaults, as plain dicts (benchmarks merge over them); the spec module defines them.
DEFAULT_HYPERPARAMETERS: dict[str, Any] = Hyperparameters().to_dict()
DEFAULT_CHECKPOINTING: dict[str, Any] = Checkpointing().to_dict()
DEFAULT_EARLY_STOPPING: dict[str, Any] = EarlyStopping().to_dict()


def normalize_spec(spec: dict[str, Any] | TrainingSpec) -> TrainingSpec:
    """Read the job with the training spec (a SpecError, a ValueError, names a bad field), then check
    what only this machine can tell: files, CUDA, packages and the model's shapes."""
    if not isinstance(spec, TrainingSpec):
        spec = TrainingSpec.from_dict(spec)
    hp = spec.hyperparameters
    if hp.device == "cuda" and not torch.cuda.is_available():
        raise SpecError("hyperparameters.device", "cuda was requested but this machine has no CUDA GPU")
    if spec.approach == "qlora" and not bitsandbytes_available():
        raise SpecError(
            "approach", "qlora needs the bitsandbytes package on the worker (pip install bitsandbytes)"
        )
    for split in ("train", "validation"):
        path = getattr(spec.dataset, split)
        if path and not Path(path).is_file():
            raise SpecError(f"dataset.{split}", f"file not found: {path}")
    resume = spec.resume_from_checkpoint
    if resume and not Path(resume).is_dir():
        raise SpecError("resume_from_checkpoint", f"not a directory: {resume}")
    model_base = spec.model_base
    if os.path.isabs(model_base) and not Path(model_base).is_dir():
        raise SpecError("model_base", f"not a directory: {model_base}")
    if is_local_model(model_base):
        check_model_limits(
            max_seq_length=hp.max_seq_length,
            model_config=model_config_read(model_base),
            model_name=Path(model_base).name,
        )
        if spec.approach in ADAPTER_APPROACHES:
            # Fail before any weight is loaded: the shapes come from the config alone.
            check_target_modules(meta_model(model_base, spec.task_type), list(hp.target_modules))
    return dataclasses.replace(spec, output_dir=str(Path(spec.output_dir).resolve()))


# optimizer construction: H-lean hook — the optimizer is built by the Trainer inside
# components.Recipe.run (marked there with the same comment; TrainingArguments.optim in
# components.training_arguments). A recipe that picks another optimizer sets
# trainer.optimizer_cls_and_kwargs at that mark, before trainer.train().
def train(spec: dict[str, Any] | TrainingSpec, reporter: Reporter) -> dict[str, Any]:
    """Run one job described by ``spec``; progress goes to ``reporter``; returns the result dict."""
    typed = normalize_spec(spec)
    return recipe_for(typed)(typed, reporter).run()


__all__ = [
    "DEFAULT_CHECKPOINTING",
    "DEFAULT_EARLY_STOPPING",
    "DEFAULT_HYPERPARAMETERS",
    "DEVICES",
    "EARLY_STOPPING_METRICS",
    "SWITCHES",
    "PackedLoss",
    "PackedTrainer",
    "ReporterCallback",
    "compile_decoder_layers",
    "normalize_spec",
    "train",
    "training_arguments",
]
