"""The training spec: one typed definition of a job's hyperparameters, checkpointing and early stopping.

Imported by the platform (experiments/configs.py validates a config with it before storing it) and by
the engine (experiments/training/engine.py reads the job it receives with it), so both accept and
refuse the same values with the same message. No torch and no Django here: only the standard library
and the torch-free resources module.

Every check raises ``SpecError`` (a ValueError) whose message starts with the field it is about, e.g.
``hyperparameters.logging_steps: must be a whole number >= 1, got 0``; ``SpecError.field`` holds the
dotted name. Checks that need the model (``max_seq_length`` against its positions) are in
``check_model_limits``, called where the model's config.json can be read; checks of the machine that
runs the job (files, CUDA, packages) stay in the engine.

Stored configs stay loadable: ``from_dict`` accepts every dict the platform ever stored (``None`` for an
optional hyperparameter means its default).
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

from experiments.training.resources import packable_run

APPROACHES = ("lora", "qlora", "full", "prompt_tuning")
ADAPTER_APPROACHES = ("lora", "qlora")
TASK_TYPES = ("chat", "instruction", "completion", "classification")
DEVICES = ("auto", "cuda", "cpu")
SWITCHES = ("auto", True, False)
# experiments/training/optim.py implements them (it imports torch; this module does not).
FULL_RECIPES = ("auto", "fp32_master", "bf16_kahan", "adamw_8bit")
# Multi-process jobs: experiments/training/sharding.py (it imports torch; this module does not).
SHARDING_MODES = ("auto", "none", "fsdp")
# Platform metric names → (Trainer's eval metric name, greater is better).
EARLY_STOPPING_METRICS: dict[str, tuple[str, bool]] = {
    "val_loss": ("eval_loss", False),
    "eval_loss": ("eval_loss", False),
    "val_accuracy": ("eval_accuracy", True),
}
# The seed's hyperparameters: every stored config holds them; the others only when given.
SEED_HYPERPARAMETERS = (
    "learning_rate",
    "batch_size",
    "gradient_accumulation",
    "epochs",
    "warmup_ratio",
    "lora_r",
    "lora_alpha",
    "lora_dropout",
    "target_modules",
    "max_seq_length",
    "seed",
)
# Learning-rate schedules (HF Trainer's lr_scheduler_type names), after the warmup.
LR_SCHEDULERS = ("linear", "cosine", "constant", "constant_with_warmup")
# config.json keys that hold a model's longest sequence, by architecture family.
POSITION_KEYS = ("max_position_embeddings", "n_positions", "max_sequence_length", "seq_length", "n_ctx")


class SpecError(ValueError):
    """A bad value in a training spec; the message starts with the dotted field name."""

    def __init__(self, field_name: str, reason: str):
        super().__init__(f"{field_name}: {reason}")
        self.field = field_name
        self.reason = reason


# --- value checks --------------------------------------------------------------------------------


def _whole(name: str, value: Any, *, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise SpecError(name, f"must be a whole number >= {minimum}, got {value!r}")
    return value


def _positive(name: str, value: Any) -> float:
    if (
        isinstance(value, bool)
        or not isinstance(value, int | float)
        or not math.isfinite(value)
        or value <= 0
    ):
        raise SpecError(name, f"must be a positive number, got {value!r}")
    return value


def _fraction(name: str, value: Any) -> float:
    """A number in [0, 1)."""
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0 <= value < 1:
        raise SpecError(name, f"must be a number in [0, 1), got {value!r}")
    return value


def _flag(name: str, value: Any) -> bool:
    if not isinstance(value, bool):
        raise SpecError(name, f"must be true or false, got {value!r}")
    return value


def _switch(name: str, value: Any) -> str | bool:
    if value not in SWITCHES or isinstance(value, int | float) and not isinstance(value, bool):
        raise SpecError(name, f'must be "auto", true or false, got {value!r}')
    return value


def _mapping(name: str, value: Any) -> dict[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise SpecError(name, f"must be an object, got {value!r}")
    return value


def _no_unknown(prefix: str, given: dict[str, Any], known: tuple[str, ...] | list[str]) -> None:
    unknown = sorted(set(given) - set(known))
    if unknown:
        raise SpecError(f"{prefix}.{unknown[0]}", f"unknown field; choose from {', '.join(sorted(known))}")


# --- the parts -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Hyperparameters:
    learning_rate: float = 2e-5
    batch_size: int = 4
    gradient_accumulation: int = 4
    epochs: float = 3
    warmup_ratio: float = 0.1
    lora_r: int = 16
    lora_alpha: float = 32
    lora_dropout: float = 0.1
    target_modules: list[str] = field(default_factory=lambda: ["q_proj", "v_proj"])
    max_seq_length: int = 512
    seed: int = 42
    num_virtual_tokens: int = 20  # prompt tuning
    device: str = "auto"  # "cuda" makes a worker without a GPU refuse the job
    gradient_checkpointing: bool = False
    logging_steps: int = 1
    max_steps: int | None = None
    # Padding-free batches with per-document attention (causal tasks; full, LoRA, QLoRA): "auto" = on.
    packing: str | bool = "auto"
    # Liger Kernel's fused RMSNorm/SwiGLU/RoPE and fused linear + cross entropy on CUDA when installed.
    fused_kernels: str | bool = "auto"
    # torch.compile each decoder layer (dynamic shapes) on CUDA.
    compile: str | bool = "auto"
    # GPUs for one job: more than 1 makes the worker launch the engine with torchrun (data parallel).
    gpus: int = 1
    # Machines for one job (``gpus`` stays per machine): more than 1 makes M workers claim the job and
    # rendezvous with torchrun's c10d rendezvous (experiments/training/rendezvous.py).
    nodes: int = 1
    # Packed micro-batch size in tokens; None = 3/4 × batch_size × max_seq_length (resources.micro_batch_tokens).
    micro_batch_tokens: int | None = None
    # Full fine-tuning's weights/optimizer recipe (experiments/training/optim.py): "auto" picks a
    # memory-lean one when fp32 master weights do not fit the GPU.
    full_recipe: str = "auto"
    # Several processes: "fsdp" shards weights, gradients and optimizer state (FSDP2); "none" is
    # data parallel (a whole copy per GPU); "auto" shards when the plan says one GPU does not hold
    # the job (resources.sharding, experiments/training/sharding.py).
    sharding: str = "auto"
    # AdamW's decoupled weight decay (0 = none, the Trainer's default).
    weight_decay: float = 0.0
    # The learning-rate schedule after the warmup (LR_SCHEDULERS).
    lr_scheduler: str = "linear"
    # Evaluate on the validation split every this many steps; None = at each checkpoint (save_steps).
    # With a best checkpoint tracked, save_steps must be a multiple of it (the Trainer's rule).
    eval_steps: int | None = None

    @classmethod
    def names(cls) -> tuple[str, ...]:
        return tuple(f.name for f in fields(cls))

    @classmethod
    def from_dict(
        cls,
        values: dict[str, Any] | None,
        *,
        approach: str = "lora",
        task_type: str = "chat",
        prefix: str = "hyperparameters",
    ) -> Hyperparameters:
        given = _mapping(prefix, values)
        _no_unknown(prefix, given, cls.names())
        defaults = cls()
        merged: dict[str, Any] = {}
        for name in cls.names():
            value = given.get(name)
            if value is None and name in given and name in SEED_HYPERPARAMETERS:
                raise SpecError(f"{prefix}.{name}", "must be given (null is not a value)")
            merged[name] = getattr(defaults, name) if value is None else value

        def where(name: str) -> str:
            return f"{prefix}.{name}"

        for name in ("learning_rate", "epochs", "lora_alpha"):
            _positive(where(name), merged[name])
        for name in ("batch_size", "gradient_accumulation", "lora_r", "max_seq_length", "logging_steps"):
            _whole(where(name), merged[name], minimum=1)
        for name in ("num_virtual_tokens", "gpus", "nodes"):
            _whole(where(name), merged[name], minimum=1)
        _whole(where("seed"), merged["seed"], minimum=0)
        if merged["max_steps"] is not None:
            _whole(where("max_steps"), merged["max_steps"], minimum=1)
        for name in ("warmup_ratio", "lora_dropout"):
            _fraction(where(name), merged[name])
        decay = merged["weight_decay"]
        if isinstance(decay, bool) or not isinstance(decay, int | float) or not 0 <= decay <= 1:
            raise SpecError(where("weight_decay"), f"must be a number in [0, 1], got {decay!r}")
        if merged["lr_scheduler"] not in LR_SCHEDULERS:
            raise SpecError(
                where("lr_scheduler"),
                f"unknown {merged['lr_scheduler']!r}; choose one of {', '.join(LR_SCHEDULERS)}",
            )
        if merged["eval_steps"] is not None:
            _whole(where("eval_steps"), merged["eval_steps"], minimum=1)
        modules = merged["target_modules"]
        if not (isinstance(modules, list) and modules and all(isinstance(m, str) and m for m in modules)):
            raise SpecError(
                where("target_modules"), f"must be a non-empty list of module names, got {modules!r}"
            )
        merged["target_modules"] = list(modules)
        if merged["device"] not in DEVICES:
            raise SpecError(
                where("device"), f"unknown {merged['device']!r}; choose one of {', '.join(DEVICES)}"
            )
        _flag(where("gradient_checkpointing"), merged["gradient_checkpointing"])
        for name in ("packing", "fused_kernels", "compile"):
            _switch(where(name), merged[name])
        if merged["packing"] is True and not packable_run(approach, task_type):
            raise SpecError(
                where("packing"),
                "only for chat, instruction and completion with full, lora or qlora "
                f"(this is {task_type} with {approach})",
            )
        if merged["full_recipe"] not in FULL_RECIPES:
            raise SpecError(
                where("full_recipe"),
                f"unknown {merged['full_recipe']!r}; choose one of {', '.join(FULL_RECIPES)}",
            )
        if merged["sharding"] not in SHARDING_MODES:
            raise SpecError(
                where("sharding"),
                f"unknown {merged['sharding']!r}; choose one of {', '.join(SHARDING_MODES)}",
            )
        if merged["micro_batch_tokens"] is not None:
            _whole(
                where("micro_batch_tokens"), merged["micro_batch_tokens"], minimum=merged["max_seq_length"]
            )
        return cls(**merged)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class Checkpointing:
    save_steps: int = 500
    save_total_limit: int | None = 3
    # Keep only the best checkpoint by the early-stopping metric (val_loss by default), plus, while the
    # job runs, the newest one for resume (removed when the run completes).
    best_only: bool = False

    @classmethod
    def from_dict(cls, values: dict[str, Any] | None, *, prefix: str = "checkpointing") -> Checkpointing:
        given = _mapping(prefix, values)
        _no_unknown(prefix, given, [f.name for f in fields(cls)])
        merged = {**asdict(cls()), **given}
        _whole(f"{prefix}.save_steps", merged["save_steps"], minimum=1)
        if merged["save_total_limit"] is not None:
            _whole(f"{prefix}.save_total_limit", merged["save_total_limit"], minimum=1)
        _flag(f"{prefix}.best_only", merged["best_only"])
        return cls(**merged)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class EarlyStopping:
    patience: int = 3
    min_delta: float = 0.01
    metric: str = "val_loss"

    @classmethod
    def from_dict(
        cls, values: dict[str, Any] | None, *, task_type: str = "chat", prefix: str = "early_stopping"
    ) -> EarlyStopping | None:
        """None (or an empty dict) is "off"."""
        if not values:
            return None
        given = _mapping(prefix, values)
        _no_unknown(prefix, given, [f.name for f in fields(cls)])
        merged = {**asdict(cls()), **given}
        metric = merged["metric"]
        if metric not in EARLY_STOPPING_METRICS:
            raise SpecError(f"{prefix}.metric", f"unknown {metric!r}; choose one of val_loss, val_accuracy")
        if metric == "val_accuracy" and task_type != "classification":
            raise SpecError(f"{prefix}.metric", "val_accuracy is for classification; use val_loss")
        _whole(f"{prefix}.patience", merged["patience"], minimum=1)
        min_delta = merged["min_delta"]
        if isinstance(min_delta, bool) or not isinstance(min_delta, int | float) or min_delta < 0:
            raise SpecError(f"{prefix}.min_delta", f"must be a number >= 0, got {min_delta!r}")
        return cls(**merged)

    @property
    def trainer_metric(self) -> tuple[str, bool]:
        """(the Trainer's metric name, greater is better)."""
        return EARLY_STOPPING_METRICS[self.metric]

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def check_validation_needs(
    checkpointing: Checkpointing, early_stopping: EarlyStopping | None, *, has_validation: bool
) -> None:
    """best_only and early stopping compare evaluations: they need a validation split."""
    if has_validation:
        return
    if early_stopping is not None:
        raise SpecError(
            "early_stopping", "needs a validation split (dataset.validation); the dataset has none"
        )
    if checkpointing.best_only:
        raise SpecError(
            "checkpointing.best_only", "needs a validation split (dataset.validation); the dataset has none"
        )


def check_approach(approach: Any) -> str:
    if approach not in APPROACHES:
        raise SpecError("approach", f"unknown {approach!r}; choose one of {', '.join(APPROACHES)}")
    return approach


def check_task_type(task_type: Any) -> str:
    if task_type not in TASK_TYPES:
        raise SpecError("task_type", f"unknown {task_type!r}; choose one of {', '.join(TASK_TYPES)}")
    return task_type


# --- model-dependent limits ----------------------------------------------------------------------


def model_config_read(model_base: str | Path) -> dict[str, Any] | None:
    """A local model folder's config.json, or None (a hub id, or no such folder)."""
    path = Path(model_base) / "config.json"
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise SpecError("model_base", f"cannot read {path}: {exc}") from exc


def model_max_positions(model_config: dict[str, Any]) -> int | None:
    """The longest sequence a model's position embeddings hold, from its config.json (also nested
    text_config for multimodal wrappers); None when it does not say."""
    for source in (model_config, model_config.get("text_config") or {}):
        for key in POSITION_KEYS:
            value = source.get(key)
            if isinstance(value, int) and not isinstance(value, bool) and value > 0:
                return value
    return None


def check_model_limits(
    *, max_seq_length: int, model_config: dict[str, Any] | None, model_name: str = "the model"
) -> None:
    """Limits that depend on the model: max_seq_length vs its position embeddings. (LoRA target
    modules need the model's layer names: the platform checks them from the config's shapes, the
    engine on a weightless copy of the model.)"""
    if not model_config:
        return
    limit = model_max_positions(model_config)
    if limit is not None and max_seq_length > limit:
        raise SpecError(
            "hyperparameters.max_seq_length",
            f"must be at most {limit} for {model_name} (its position limit), got {max_seq_length}",
        )


# --- the whole spec ------------------------------------------------------------------------------


@dataclass(frozen=True)
class DatasetSplits:
    train: str
    validation: str | None = None


@dataclass(frozen=True)
class TrainingSpec:
    """What a worker receives for one job (experiments.services.job_spec_for_worker builds it)."""

    job_id: str
    model_base: str
    output_dir: str
    dataset: DatasetSplits
    approach: str = "lora"
    task_type: str = "chat"
    hyperparameters: Hyperparameters = field(default_factory=Hyperparameters)
    checkpointing: Checkpointing = field(default_factory=Checkpointing)
    early_stopping: EarlyStopping | None = None
    resume_from_checkpoint: str | None = None
    # Evaluate once before the first step: the base's val_loss/val_accuracy as the curves' origin.
    eval_on_start: bool = False
    # Random weights with the config's shapes (benchmarks at real size; nothing to download).
    random_init: bool = False
    # Steps left out of the reported tokens/s (warm-up: allocation, kernel selection).
    throughput_warmup_steps: int = 1
    # The running attempt (fencing) and what a worker checks before taking the job.
    attempt: int | None = None
    resources: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_dict(cls, spec: dict[str, Any]) -> TrainingSpec:
        if not isinstance(spec, dict):
            raise SpecError("spec", f"must be an object, got {type(spec).__name__}")
        for key in ("job_id", "model_base", "output_dir", "dataset"):
            if not spec.get(key):
                raise SpecError(key, "required")
        approach = check_approach(spec.get("approach") or "lora")
        task_type = check_task_type(spec.get("task_type") or "chat")
        dataset = spec["dataset"]
        if not isinstance(dataset, dict) or not dataset.get("train"):
            raise SpecError("dataset.train", "required")
        splits = DatasetSplits(train=str(dataset["train"]), validation=dataset.get("validation") or None)
        hyperparameters = Hyperparameters.from_dict(
            spec.get("hyperparameters"), approach=approach, task_type=task_type
        )
        checkpointing = Checkpointing.from_dict(spec.get("checkpointing"))
        early_stopping = EarlyStopping.from_dict(spec.get("early_stopping"), task_type=task_type)
        check_validation_needs(checkpointing, early_stopping, has_validation=splits.validation is not None)
        every = hyperparameters.eval_steps
        if every is not None and splits.validation is not None and checkpointing.save_steps % every:
            raise SpecError(
                "hyperparameters.eval_steps",
                f"checkpointing.save_steps ({checkpointing.save_steps}) must be a multiple of it (the best "
                "checkpoint is chosen among evaluated steps)",
            )
        warmup = spec.get("throughput_warmup_steps") or 1
        _whole("throughput_warmup_steps", warmup, minimum=1)
        attempt = spec.get("attempt")
        if attempt is not None:
            _whole("attempt", attempt, minimum=0)
        return cls(
            job_id=str(spec["job_id"]),
            model_base=str(spec["model_base"]),
            output_dir=str(spec["output_dir"]),
            dataset=splits,
            approach=approach,
            task_type=task_type,
            hyperparameters=hyperparameters,
            checkpointing=checkpointing,
            early_stopping=early_stopping,
            resume_from_checkpoint=spec.get("resume_from_checkpoint") or None,
            eval_on_start=bool(spec.get("eval_on_start")) and splits.validation is not None,
            random_init=bool(spec.get("random_init")),
            throughput_warmup_steps=warmup,
            attempt=attempt,
            resources=dict(spec.get("resources") or {}),
        )

    @property
    def packing(self) -> bool:
        """Whether this run trains on padding-free batches ("auto" means yes where it applies)."""
        return packable_run(self.approach, self.task_type) and self.hyperparameters.packing in ("auto", True)

    @property
    def has_validation(self) -> bool:
        return self.dataset.validation is not None

    @property
    def best_metric(self) -> tuple[str, bool]:
        """(the Trainer's metric for "best", greater is better): the early-stopping metric, else val_loss."""
        return (self.early_stopping or EarlyStopping()).trainer_metric

    def to_dict(self) -> dict[str, Any]:
        """The spec as plain data, with ``hyperparameters.packing`` resolved to what this run does
        (the shape the engine's helpers and hooks read)."""
        values = asdict(self)
        values["hyperparameters"]["packing"] = self.packing
        return values


def seed_defaults() -> dict[str, Any]:
    """The seed's hyperparameters with their built-in defaults (a stored config always holds these)."""
    defaults = Hyperparameters().to_dict()
    return {name: defaults[name] for name in SEED_HYPERPARAMETERS}


OPTIONAL_HYPERPARAMETERS = frozenset(Hyperparameters.names()) - set(SEED_HYPERPARAMETERS)
