"""The training engine: ``train(spec, reporter)`` runs one fine-tuning job with HF Trainer (+ peft LoRA).

No Django here: the platform sees the run only through the ``Reporter`` it passes in.
"""

from __future__ import annotations

import contextlib
import math
import os
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from transformers import (
    AutoTokenizer,
    DataCollatorForSeq2Seq,
    DataCollatorWithPadding,
    EarlyStoppingCallback,
    PrinterCallback,
    TrainerCallback,
    TrainerControl,
    TrainerState,
    TrainingArguments,
    set_seed,
)
from transformers.trainer_utils import PREFIX_CHECKPOINT_DIR

from experiments.training.checkpoints import AtomicCheckpointTrainer
from experiments.training.data import (
    IGNORE_INDEX,
    TASK_TYPES,
    classification_labels,
    load_split,
    tokenize_classification,
    tokenize_dataset,
)
from experiments.training.modeling import (
    ADAPTER_APPROACHES,
    APPROACHES,
    bitsandbytes_available,
    check_target_modules,
    is_local_model,
    load_model,
    meta_model,
)
from experiments.training.packing import (
    FinalHiddenState,
    PackedCollator,
    base_causal_lm,
    chunked_causal_lm_loss,
    liger_available,
    register_varlen_attention,
    split_packed_batch,
    varlen_available,
)
from experiments.training.reporter import Reporter
from experiments.training.resources import micro_batch_tokens, packable_run

DEVICES = ("auto", "cuda", "cpu")
DEFAULT_HYPERPARAMETERS: dict[str, Any] = {
    "learning_rate": 2e-5,
    "batch_size": 4,
    "gradient_accumulation": 4,
    "epochs": 3,
    "warmup_ratio": 0.1,
    "lora_r": 16,
    "lora_alpha": 32,
    "lora_dropout": 0.1,
    "target_modules": ["q_proj", "v_proj"],
    "max_seq_length": 512,
    "seed": 42,
    "num_virtual_tokens": 20,
    "device": "auto",
    "gradient_checkpointing": False,
    "logging_steps": 1,
    "max_steps": None,
    # Padding-free batches with per-document attention (causal tasks; full, LoRA, QLoRA): "auto" = on.
    "packing": "auto",
    # Liger Kernel's fused RMSNorm/SwiGLU/RoPE and fused linear + cross entropy on CUDA when installed.
    "fused_kernels": "auto",
    # torch.compile each decoder layer (dynamic shapes) on CUDA.
    "compile": "auto",
    # GPUs for one job: more than 1 makes the worker launch the engine with torchrun (data parallel).
    "gpus": 1,
    # Packed micro-batch size in tokens; None = 3/4 × batch_size × max_seq_length (see micro_batch_tokens).
    "micro_batch_tokens": None,
}
SWITCHES = ("auto", True, False)
DEFAULT_CHECKPOINTING: dict[str, Any] = {"save_steps": 500, "save_total_limit": 3, "best_only": False}
DEFAULT_EARLY_STOPPING: dict[str, Any] = {"patience": 3, "min_delta": 0.01, "metric": "val_loss"}
# Platform metric names → (Trainer's eval metric name, greater is better).
EARLY_STOPPING_METRICS = {
    "val_loss": ("eval_loss", False),
    "eval_loss": ("eval_loss", False),
    "val_accuracy": ("eval_accuracy", True),
}


class ReporterCallback(TrainerCallback):
    """Forwards Trainer events to the reporter and turns a cancel request into a clean stop.

    Metrics: loss, val_loss (val_accuracy for classification), learning_rate, grad_norm,
    tokens_per_sec, eta_seconds, and on CUDA gpu_mem_allocated_mb / gpu_mem_reserved_mb.
    """

    def __init__(self, reporter: Reporter, *, warmup_steps: int = 1) -> None:
        self.reporter = reporter
        self.warmup_steps = max(1, warmup_steps)
        self.cancelled = False
        self.latest_metrics: dict[str, float] = {}
        self._last_log_time = time.perf_counter()
        self._last_log_tokens = 0
        self._begin_time = time.perf_counter()
        self._begin_step = 0
        self._begin_tokens = 0
        # Measured after the first step of this run (which pays for warm-up, compilation, allocation).
        self._timed_from: tuple[float, int, int] | None = None
        self.end_time: float | None = None
        self.end_tokens = 0

    def on_train_begin(
        self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kwargs: Any
    ) -> None:
        self._last_log_time = self._begin_time = time.perf_counter()
        self._last_log_tokens = self._begin_tokens = state.num_input_tokens_seen
        self._begin_step = state.global_step

    def eta_seconds(self, state: TrainerState) -> float | None:
        done = state.global_step - self._begin_step
        if done <= 0 or not state.max_steps:
            return None
        per_step = (time.perf_counter() - self._begin_time) / done
        return max(0.0, (state.max_steps - state.global_step) * per_step)

    def throughput(self) -> float | None:
        """Non-padding tokens per second over this run, from the end of its first step."""
        if self._timed_from is None or self.end_time is None:
            return None
        start, _, tokens = self._timed_from
        elapsed = self.end_time - start
        # Every rank counts its own tokens: the job's rate is their sum (each rank calls this).
        tokens = _sum_ranks(self.end_tokens - tokens)
        return tokens / elapsed if elapsed > 0 else None

    def on_log(
        self,
        args: TrainingArguments,
        state: TrainerState,
        control: TrainerControl,
        logs: dict[str, float] | None = None,
        **kwargs: Any,
    ) -> None:
        logs = logs or {}
        values = {key: float(logs[key]) for key in ("loss", "learning_rate", "grad_norm") if key in logs}
        if "eval_loss" in logs:
            values["val_loss"] = float(logs["eval_loss"])
        if "eval_accuracy" in logs:
            values["val_accuracy"] = float(logs["eval_accuracy"])
        if "loss" in logs:
            now = time.perf_counter()
            elapsed = now - self._last_log_time
            tokens = state.num_input_tokens_seen - self._last_log_tokens
            if elapsed > 0:
                values["tokens_per_sec"] = tokens / elapsed
            self._last_log_time, self._last_log_tokens = now, state.num_input_tokens_seen
            eta = self.eta_seconds(state)
            if eta is not None:
                values["eta_seconds"] = eta
            if torch.cuda.is_available():
                values["gpu_mem_allocated_mb"] = torch.cuda.memory_allocated() / 2**20
                values["gpu_mem_reserved_mb"] = torch.cuda.memory_reserved() / 2**20
        if values:
            self.latest_metrics.update(values)
            self.reporter.metrics(state.global_step, values, epoch=state.epoch)

    def on_step_end(
        self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kwargs: Any
    ) -> None:
        # Throughput is timed from the end of the warm-up steps to the end of the run; the GPU is
        # synchronised only at those two points.
        done = state.global_step - self._begin_step
        if self._timed_from is None and done >= self.warmup_steps:
            _synchronize()
            self._timed_from = (time.perf_counter(), state.global_step, state.num_input_tokens_seen)
        elif state.global_step >= state.max_steps:
            _synchronize()
        self.end_time, self.end_tokens = time.perf_counter(), state.num_input_tokens_seen
        self.reporter.progress(
            step=state.global_step, total_steps=state.max_steps, epoch=float(state.epoch or 0.0)
        )
        if _any_rank(self.reporter.should_stop()):
            self.cancelled = True
            control.should_training_stop = True
            # Keep a checkpoint so that a cancelled job can be resumed.
            control.should_save = True

    def on_save(
        self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kwargs: Any
    ) -> None:
        path = Path(args.output_dir).resolve() / f"{PREFIX_CHECKPOINT_DIR}-{state.global_step}"
        self.reporter.checkpoint(step=state.global_step, path=str(path), metrics=dict(self.latest_metrics))


def _all_ranks(value: float, op: str) -> float:
    """``value`` reduced over the ranks of a multi-process run (``op``: "max" or "sum"); itself otherwise."""
    import torch.distributed as dist

    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return value
    device = torch.device("cuda", torch.cuda.current_device()) if dist.get_backend() == "nccl" else "cpu"
    tensor = torch.tensor([float(value)], dtype=torch.float64, device=device)
    dist.all_reduce(tensor, op=dist.ReduceOp.MAX if op == "max" else dist.ReduceOp.SUM)
    return float(tensor.item())


def _any_rank(flag: bool) -> bool:
    """In a multi-process run only rank 0 hears a cancel request: every rank must stop together."""
    return bool(_all_ranks(1.0 if flag else 0.0, "max"))


def _sum_ranks(value: float) -> float:
    return _all_ranks(value, "sum")


def _synchronize() -> None:
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        torch.cuda.synchronize()


def normalize_spec(spec: dict[str, Any]) -> dict[str, Any]:
    """Fill defaults and reject bad specs with a ValueError naming the field."""
    for key in ("job_id", "model_base", "output_dir", "dataset"):
        if not spec.get(key):
            raise ValueError(f"{key}: required")
    approach = spec.get("approach", "lora")
    if approach not in APPROACHES:
        raise ValueError(f"approach: unknown {approach!r}; choose one of {', '.join(APPROACHES)}")
    task_type = spec.get("task_type", "chat")
    if task_type not in TASK_TYPES:
        raise ValueError(f"task_type: unknown {task_type!r}; choose one of {', '.join(TASK_TYPES)}")

    given = dict(spec.get("hyperparameters") or {})
    unknown = sorted(set(given) - set(DEFAULT_HYPERPARAMETERS))
    if unknown:
        raise ValueError(f"hyperparameters.{unknown[0]}: unknown hyperparameter")
    hp = {**DEFAULT_HYPERPARAMETERS, **{k: v for k, v in given.items() if v is not None}}
    if "max_steps" in given:
        hp["max_steps"] = given["max_steps"]
    _check_number(hp, "learning_rate", minimum=0.0, strict=True)
    for key in ("batch_size", "gradient_accumulation", "max_seq_length", "logging_steps"):
        _check_int(hp, key, minimum=1)
    _check_number(hp, "epochs", minimum=0.0, strict=True)
    _check_number(hp, "warmup_ratio", minimum=0.0)
    if hp["warmup_ratio"] >= 1:
        raise ValueError("hyperparameters.warmup_ratio: must be below 1")
    _check_int(hp, "seed", minimum=0)
    if hp["max_steps"] is not None:
        _check_int(hp, "max_steps", minimum=1)
    if approach in ADAPTER_APPROACHES:
        _check_int(hp, "lora_r", minimum=1)
        _check_number(hp, "lora_alpha", minimum=0.0, strict=True)
        _check_number(hp, "lora_dropout", minimum=0.0)
        if hp["lora_dropout"] >= 1:
            raise ValueError("hyperparameters.lora_dropout: must be below 1")
        modules = hp["target_modules"]
        if not (isinstance(modules, list) and modules and all(isinstance(m, str) and m for m in modules)):
            raise ValueError("hyperparameters.target_modules: must be a non-empty list of module names")
    if approach == "prompt_tuning":
        _check_int(hp, "num_virtual_tokens", minimum=1)
    if hp["device"] not in DEVICES:
        raise ValueError(
            f"hyperparameters.device: unknown {hp['device']!r}; choose one of {', '.join(DEVICES)}"
        )
    if hp["device"] == "cuda" and not torch.cuda.is_available():
        raise ValueError("hyperparameters.device: cuda was requested but this machine has no CUDA GPU")
    if not isinstance(hp["gradient_checkpointing"], bool):
        raise ValueError("hyperparameters.gradient_checkpointing: must be true or false")
    for key in ("packing", "fused_kernels", "compile"):
        if hp[key] not in SWITCHES:
            raise ValueError(f"hyperparameters.{key}: must be \"auto\", true or false, got {hp[key]!r}")
    packable = packable_run(approach, task_type)
    if hp["packing"] is True and not packable:
        raise ValueError(
            "hyperparameters.packing: only for chat, instruction and completion with full, lora or qlora"
        )
    hp["packing"] = packable and hp["packing"] in ("auto", True)
    _check_int(hp, "gpus", minimum=1)
    if hp["micro_batch_tokens"] is not None:
        _check_int(hp, "micro_batch_tokens", minimum=hp["max_seq_length"])
    if approach == "qlora" and not bitsandbytes_available():
        raise ValueError(
            "approach: qlora needs the bitsandbytes package on the worker (pip install bitsandbytes)"
        )

    dataset = spec["dataset"]
    if not isinstance(dataset, dict) or not dataset.get("train"):
        raise ValueError("dataset.train: required")
    for split in ("train", "validation"):
        path = dataset.get(split)
        if path and not Path(path).is_file():
            raise ValueError(f"dataset.{split}: file not found: {path}")
    has_validation = bool(dataset.get("validation"))

    checkpointing = {**DEFAULT_CHECKPOINTING, **(spec.get("checkpointing") or {})}
    _check_int(checkpointing, "save_steps", minimum=1, prefix="checkpointing")
    if checkpointing["save_total_limit"] is not None:
        _check_int(checkpointing, "save_total_limit", minimum=1, prefix="checkpointing")
    if checkpointing["best_only"] and not has_validation:
        raise ValueError("checkpointing.best_only: needs dataset.validation")

    early_stopping = spec.get("early_stopping")
    if early_stopping:
        early_stopping = {**DEFAULT_EARLY_STOPPING, **early_stopping}
        metric = early_stopping["metric"]
        if metric not in EARLY_STOPPING_METRICS or (
            metric == "val_accuracy" and task_type != "classification"
        ):
            raise ValueError(
                f"early_stopping.metric: unknown {metric!r}; use val_loss (or val_accuracy for classification)"
            )
        _check_int(early_stopping, "patience", minimum=1, prefix="early_stopping")
        _check_number(early_stopping, "min_delta", minimum=0.0, prefix="early_stopping")
        if not has_validation:
            raise ValueError("early_stopping: needs dataset.validation")

    resume = spec.get("resume_from_checkpoint")
    if resume and not Path(resume).is_dir():
        raise ValueError(f"resume_from_checkpoint: not a directory: {resume}")
    model_base = str(spec["model_base"])
    if os.path.isabs(model_base) and not Path(model_base).is_dir():
        raise ValueError(f"model_base: not a directory: {model_base}")
    if approach in ADAPTER_APPROACHES and is_local_model(model_base):
        # Fail before any weight is loaded: the shapes come from the config alone.
        check_target_modules(meta_model(model_base, task_type), list(hp["target_modules"]))

    return {
        "job_id": str(spec["job_id"]),
        "model_base": model_base,
        "approach": approach,
        "task_type": task_type,
        "hyperparameters": hp,
        "early_stopping": early_stopping or None,
        "checkpointing": checkpointing,
        "dataset": {"train": dataset["train"], "validation": dataset.get("validation") or None},
        "output_dir": str(Path(spec["output_dir"]).resolve()),
        "resume_from_checkpoint": resume or None,
        # Evaluate once before the first step: the base's val_loss/val_accuracy as the curves' origin.
        "eval_on_start": bool(spec.get("eval_on_start")) and has_validation,
        # Random weights with the config's shapes (benchmarks at real size; nothing to download).
        "random_init": bool(spec.get("random_init")),
        # Steps left out of the reported tokens/s (warm-up: allocation, kernel selection).
        "throughput_warmup_steps": int(spec.get("throughput_warmup_steps") or 1),
    }


def train(spec: dict[str, Any], reporter: Reporter) -> dict[str, Any]:
    """Run one job described by ``spec``; progress goes to ``reporter``; returns the result dict."""
    spec = normalize_spec(spec)
    hp, early_stopping = spec["hyperparameters"], spec["early_stopping"]
    approach, task_type = spec["approach"], spec["task_type"]
    output_dir = Path(spec["output_dir"])
    output_dir.mkdir(parents=True, exist_ok=True)
    set_seed(hp["seed"])
    on_gpu = torch.cuda.is_available() and hp["device"] != "cpu"
    use_bf16 = on_gpu and torch.cuda.is_bf16_supported()
    reporter.log(
        f"job {spec['job_id']}: loading {spec['model_base']} ({approach}, {task_type}, bf16={use_bf16})"
    )
    if on_gpu:
        torch.cuda.reset_peak_memory_stats()

    tokenizer = AutoTokenizer.from_pretrained(spec["model_base"])
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    labels = None
    if task_type == "classification":
        labels = classification_labels(load_split(spec["dataset"]["train"]))
    packing = hp["packing"]
    attention = "sdpa"
    if packing and on_gpu and varlen_available():
        attention = register_varlen_attention()
    fused = on_gpu and hp["fused_kernels"] in ("auto", True) and liger_available()
    if hp["fused_kernels"] is True and on_gpu and not fused:
        raise ValueError("hyperparameters.fused_kernels: needs the liger-kernel package on the worker")
    model = load_model(
        model_base=spec["model_base"],
        approach=approach,
        task_type=task_type,
        hp=hp,
        on_gpu=on_gpu,
        use_bf16=use_bf16,
        labels=labels,
        random_init=spec["random_init"],
        attn_implementation=attention,
    )
    compiled = on_gpu and hp["compile"] in ("auto", True) and packing
    if compiled:
        compile_decoder_layers(model)
    if packing:
        reporter.log(
            f"padding-free batches, attention {attention}, "
            f"loss {'Liger fused linear+CE' if fused else 'chunked linear+CE'}, "
            f"compiled layers {compiled}"
        )
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    total = sum(p.numel() for p in model.parameters())
    reporter.log(f"trainable parameters: {trainable:,} of {total:,} ({100 * trainable / max(total, 1):.3f}%)")

    train_dataset = _tokenized_split(spec["dataset"]["train"], tokenizer, spec, reporter, labels)
    eval_dataset = None
    if spec["dataset"]["validation"]:
        eval_dataset = _tokenized_split(spec["dataset"]["validation"], tokenizer, spec, reporter, labels)

    args = _training_arguments(spec, use_bf16=use_bf16, on_gpu=on_gpu)
    if args.n_gpu > 1:
        # One process trains on one GPU; several GPUs are several processes (`gpus: N`, torchrun).
        # Left alone, the Trainer would wrap the model in nn.DataParallel over every visible GPU, which
        # the packed path does not support (seen on a 2-GPU host: a 1-GPU job failed in replica 0).
        args._n_gpu = 1
    reporter_callback = ReporterCallback(reporter, warmup_steps=spec["throughput_warmup_steps"])
    callbacks: list[TrainerCallback] = [reporter_callback]
    early_stopping_callback = None
    if early_stopping:
        early_stopping_callback = EarlyStoppingCallback(
            early_stopping_patience=early_stopping["patience"],
            early_stopping_threshold=early_stopping["min_delta"],
        )
        callbacks.append(early_stopping_callback)
    trainer_class: type[AtomicCheckpointTrainer] = AtomicCheckpointTrainer
    compute_loss_func = None
    if task_type == "classification":
        collator: Any = DataCollatorWithPadding(tokenizer)
    elif packing:
        collator = PackedCollator(varlen_kwargs=attention != "sdpa")
        trainer_class = PackedTrainer
        PackedTrainer.micro_batch_tokens = micro_batch_tokens(hp)
        compute_loss_func = PackedLoss(model, fused=fused, compute_dtype=torch.bfloat16 if use_bf16 else None)
    else:
        collator = DataCollatorForSeq2Seq(tokenizer, padding=True, label_pad_token_id=IGNORE_INDEX)
    # Checkpoints are written to a staging folder and renamed into place (experiments/training/checkpoints.py).
    trainer = trainer_class(
        model=model,
        compute_loss_func=compute_loss_func,
        args=args,
        data_collator=collator,
        train_dataset=train_dataset,
        eval_dataset=eval_dataset,
        processing_class=tokenizer,
        callbacks=callbacks,
        compute_metrics=_accuracy if task_type == "classification" else None,
    )
    # The reporter owns the output; PrinterCallback would mix log dicts into StdoutReporter's JSON lines.
    trainer.remove_callback(PrinterCallback)
    output = trainer.train(resume_from_checkpoint=spec["resume_from_checkpoint"])
    if attention != "sdpa":
        # The saved model must load anywhere: our attention name is registered only in this process.
        base_causal_lm(model).config._attn_implementation = "sdpa"

    final_path = output_dir / "final"
    trainer.save_model(str(final_path))
    tokenizer.save_pretrained(str(final_path))

    if reporter_callback.cancelled:
        stopped = "cancelled"
    elif (
        early_stopping_callback is not None
        and early_stopping_callback.early_stopping_patience_counter >= early_stopping["patience"]
    ):
        stopped = "early_stopped"
    else:
        stopped = "completed"
    final_loss = reporter_callback.latest_metrics.get("loss", output.training_loss)
    result = {
        "final_loss": float(final_loss) if final_loss is not None and math.isfinite(final_loss) else None,
        "global_step": trainer.state.global_step,
        "total_steps": trainer.state.max_steps,
        "output_dir": str(output_dir),
        "final_model_path": str(final_path),
        "stopped": stopped,
        "best_checkpoint": trainer.state.best_model_checkpoint,
        "trainable_parameters": trainable,
        "total_parameters": total,
        "tokens_per_sec": reporter_callback.throughput(),  # all ranks: a collective
        "train_runtime_s": output.metrics.get("train_runtime"),
    }
    for key in ("val_loss", "val_accuracy"):
        if key in reporter_callback.latest_metrics:
            result[key] = reporter_callback.latest_metrics[key]
    result["processes"] = int(os.environ.get("WORLD_SIZE", "1"))
    if on_gpu:
        result["device"] = torch.cuda.get_device_name(0)
        result["peak_gpu_memory_allocated_mb"] = torch.cuda.max_memory_allocated() / 2**20
        result["peak_gpu_memory_reserved_mb"] = torch.cuda.max_memory_reserved() / 2**20
    reporter.log(f"job {spec['job_id']}: {stopped} at step {result['global_step']}/{result['total_steps']}")
    return result


def _accuracy(eval_prediction: Any) -> dict[str, float]:
    logits = eval_prediction.predictions
    if isinstance(logits, tuple):
        logits = logits[0]
    return {"accuracy": float((np.argmax(logits, axis=-1) == eval_prediction.label_ids).mean())}


def _tokenized_split(
    path: str, tokenizer: Any, spec: dict[str, Any], reporter: Reporter, labels: list[str] | None
) -> Any:
    raw = load_split(path)
    max_seq_length = spec["hyperparameters"]["max_seq_length"]
    if spec["task_type"] == "classification":
        return tokenize_classification(raw, tokenizer, labels=labels or [], max_seq_length=max_seq_length)
    tokenized = tokenize_dataset(raw, tokenizer, task_type=spec["task_type"], max_seq_length=max_seq_length)
    dropped = len(raw) - len(tokenized)
    if dropped:
        reporter.log(f"{Path(path).name}: dropped {dropped} rows with no trainable token after truncation")
    if len(tokenized) == 0:
        raise ValueError(f"dataset: {path} has no usable rows")
    return tokenized


def compile_decoder_layers(model: Any) -> None:
    """torch.compile every decoder layer with dynamic shapes (packed rows vary in length): fuses the
    element-wise work (norms, rotary, SwiGLU, LoRA scaling) and recomputes it in the backward pass
    instead of keeping it, so fewer kernels run and fewer activations are stored."""
    import torch._dynamo

    decoder = base_causal_lm(model).get_decoder()
    layers = getattr(decoder, "layers", None)
    if layers is None:
        return
    torch._dynamo.config.cache_size_limit = max(torch._dynamo.config.cache_size_limit, 64)
    for layer in layers:
        layer.compile(dynamic=True)


class PackedTrainer(AtomicCheckpointTrainer):
    """HF Trainer over padding-free batches. Each training step receives the whole optimizer step
    (batch_size × gradient_accumulation samples, flattened) and runs it as micro-batches of whole
    samples holding at most ``micro_batch_tokens`` tokens (see ``micro_batch_tokens()``), so memory is
    bounded as for padded batches while typical micro-batches carry several times more real tokens.
    Gradients accumulate across them; the
    loss is normalised by the step's target count, exactly as gradient accumulation does. Real tokens
    are counted from batch shapes on the host, so no step waits on the GPU for them."""

    micro_batch_tokens = 4096

    def training_step(self, model: Any, inputs: dict[str, Any], num_items_in_batch: Any = None) -> Any:
        self.state.num_input_tokens_seen += int(inputs["input_ids"].shape[-1])
        loss = None
        micro_batches = split_packed_batch(inputs, self.micro_batch_tokens)
        for index, micro_batch in enumerate(micro_batches):
            # Ranks cut their steps into different numbers of micro-batches: gradients are reduced
            # once per step (on the last), so every rank joins the same collectives.
            last = index == len(micro_batches) - 1
            with contextlib.nullcontext() if last else self.accelerator.no_sync(model):
                part = super().training_step(model, micro_batch, num_items_in_batch)
            loss = part if loss is None else loss + part
        return loss


class PackedLoss:
    """Trainer's compute_loss_func for packed batches: the loss comes from the decoder's last hidden
    state through chunked (or Liger's fused) linear + cross entropy, never from full-vocabulary logits
    (the collator asks the model for the last position's logits only)."""

    def __init__(self, model: Any, *, fused: bool, compute_dtype: torch.dtype | None = None) -> None:
        self.hidden = FinalHiddenState(base_causal_lm(model))
        self.fused = fused
        self.compute_dtype = compute_dtype

    def __call__(self, outputs: Any, labels: Any, num_items_in_batch: Any = None) -> Any:
        return chunked_causal_lm_loss(
            self.hidden.take(),
            self.hidden.head,
            labels,
            num_items_in_batch=num_items_in_batch,
            fused=self.fused,
            compute_dtype=self.compute_dtype,
        )


def _training_arguments(
    spec: dict[str, Any], *, use_bf16: bool, on_gpu: bool, fused: bool = False
) -> TrainingArguments:
    hp, checkpointing, early_stopping = spec["hyperparameters"], spec["checkpointing"], spec["early_stopping"]
    has_validation = spec["dataset"]["validation"] is not None
    wants_best = bool(early_stopping) or checkpointing["best_only"]
    best_metric, greater_is_better = EARLY_STOPPING_METRICS[
        early_stopping["metric"] if early_stopping else "val_loss"
    ]
    return TrainingArguments(
        output_dir=spec["output_dir"],
        learning_rate=hp["learning_rate"],
        # Packed: the Trainer hands over a whole optimizer step (batch_size × gradient_accumulation
        # samples) and PackedTrainer splits it into micro-batches by token budget.
        per_device_train_batch_size=hp["batch_size"] * (hp["gradient_accumulation"] if hp["packing"] else 1),
        per_device_eval_batch_size=hp["batch_size"],
        gradient_accumulation_steps=1 if hp["packing"] else hp["gradient_accumulation"],
        num_train_epochs=hp["epochs"],
        max_steps=hp["max_steps"] or -1,
        # transformers 5 folded warmup_ratio into warmup_steps: a float below 1 is a ratio.
        warmup_steps=float(hp["warmup_ratio"]),
        logging_steps=hp["logging_steps"],
        seed=hp["seed"],
        data_seed=hp["seed"],
        bf16=use_bf16,
        save_strategy="best" if checkpointing["best_only"] else "steps",
        save_steps=checkpointing["save_steps"],
        save_total_limit=checkpointing["save_total_limit"],
        eval_strategy="steps" if has_validation else "no",
        eval_steps=checkpointing["save_steps"] if has_validation else None,
        eval_on_start=spec["eval_on_start"],
        load_best_model_at_end=bool(early_stopping),
        metric_for_best_model=best_metric if wants_best else None,
        greater_is_better=greater_is_better if wants_best else None,
        # Packed batches have no padding: PackedTrainer counts their tokens from the batch shape.
        include_num_input_tokens_seen="no" if hp["packing"] else "non_padding",
        prediction_loss_only=spec["task_type"] != "classification",
        optim="adamw_torch_fused" if on_gpu else "adamw_torch",
        use_liger_kernel=fused,
        liger_kernel_config={"fused_linear_cross_entropy": False, "cross_entropy": False} if fused else None,
        report_to="none",
        disable_tqdm=True,
        use_cpu=not on_gpu,
        dataloader_pin_memory=on_gpu,
        remove_unused_columns=False,
        # Every trainable parameter gets a gradient each step (adapters, prompt, head or all weights):
        # DDP need not walk the autograd graph for unused ones, which the Trainer otherwise asks for.
        ddp_find_unused_parameters=False,
    )


def _check_int(values: dict[str, Any], key: str, *, minimum: int, prefix: str = "hyperparameters") -> None:
    value = values[key]
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ValueError(f"{prefix}.{key}: must be an integer >= {minimum}, got {value!r}")


def _check_number(
    values: dict[str, Any], key: str, *, minimum: float, strict: bool = False, prefix: str = "hyperparameters"
) -> None:
    value = values[key]
    ok = isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)
    if not ok or value < minimum or (strict and value == minimum):
        sign = ">" if strict else ">="
        raise ValueError(f"{prefix}.{key}: must be a number {sign} {minimum}, got {value!r}")
