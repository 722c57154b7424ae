"""The training engine: ``train(spec, reporter)`` runs one fine-tuning job with HF Trainer (+ peft LoRA).

No Django here: the platform sees the run only through the ``Reporter`` it passes in.
"""

from __future__ import annotations

import math
import os
import time
from pathlib import Path
from typing import Any

import torch
from peft import LoraConfig, TaskType, get_peft_model
from transformers import (
    AutoModelForCausalLM,
    AutoTokenizer,
    DataCollatorForSeq2Seq,
    EarlyStoppingCallback,
    PrinterCallback,
    Trainer,
    TrainerCallback,
    TrainerControl,
    TrainerState,
    TrainingArguments,
    set_seed,
)
from transformers.trainer_utils import PREFIX_CHECKPOINT_DIR

from experiments.training.data import IGNORE_INDEX, TASK_TYPES, load_split, tokenize_dataset
from experiments.training.reporter import Reporter

APPROACHES = ("lora", "full")
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
    "logging_steps": 1,
    "max_steps": None,
}
DEFAULT_CHECKPOINTING: dict[str, Any] = {"save_steps": 500, "save_total_limit": 3, "best_only": False}
DEFAULT_EARLY_STOPPING: dict[str, Any] = {"patience": 3, "min_delta": 0.01, "metric": "val_loss"}
# Platform metric names → Trainer's eval metric names.
EARLY_STOPPING_METRICS = {"val_loss": "eval_loss", "eval_loss": "eval_loss"}


class ReporterCallback(TrainerCallback):
    """Forwards Trainer events to the reporter and turns a cancel request into a clean stop."""

    def __init__(self, reporter: Reporter) -> None:
        self.reporter = reporter
        self.cancelled = False
        self.latest_metrics: dict[str, float] = {}
        self._last_log_time = time.perf_counter()
        self._last_log_tokens = 0

    def on_train_begin(
        self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kwargs: Any
    ) -> None:
        self._last_log_time = time.perf_counter()
        self._last_log_tokens = state.num_input_tokens_seen

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
        if "loss" in logs:
            now = time.perf_counter()
            elapsed = now - self._last_log_time
            tokens = state.num_input_tokens_seen - self._last_log_tokens
            if elapsed > 0:
                values["tokens_per_sec"] = tokens / elapsed
            self._last_log_time, self._last_log_tokens = now, state.num_input_tokens_seen
        if values:
            self.latest_metrics.update(values)
            self.reporter.metrics(state.global_step, values, epoch=state.epoch)

    def on_step_end(
        self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kwargs: Any
    ) -> None:
        self.reporter.progress(
            step=state.global_step, total_steps=state.max_steps, epoch=float(state.epoch or 0.0)
        )
        if self.reporter.should_stop():
            self.cancelled = True
            control.should_training_stop = True
            # Keep a checkpoint so that a cancelled job can be resumed.
            control.should_save = True

    def on_save(
        self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kwargs: Any
    ) -> None:
        path = Path(args.output_dir).resolve() / f"{PREFIX_CHECKPOINT_DIR}-{state.global_step}"
        self.reporter.checkpoint(step=state.global_step, path=str(path), metrics=dict(self.latest_metrics))


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
    if approach == "lora":
        _check_int(hp, "lora_r", minimum=1)
        _check_number(hp, "lora_alpha", minimum=0.0, strict=True)
        _check_number(hp, "lora_dropout", minimum=0.0)
        modules = hp["target_modules"]
        if not (isinstance(modules, list) and modules and all(isinstance(m, str) and m for m in modules)):
            raise ValueError("hyperparameters.target_modules: must be a non-empty list of module names")

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
        if early_stopping["metric"] not in EARLY_STOPPING_METRICS:
            raise ValueError(f"early_stopping.metric: unknown {early_stopping['metric']!r}; use val_loss")
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
    }


def train(spec: dict[str, Any], reporter: Reporter) -> dict[str, Any]:
    """Run one job described by ``spec``; progress goes to ``reporter``; returns the result dict."""
    spec = normalize_spec(spec)
    hp, early_stopping = spec["hyperparameters"], spec["early_stopping"]
    output_dir = Path(spec["output_dir"])
    output_dir.mkdir(parents=True, exist_ok=True)
    set_seed(hp["seed"])
    use_bf16 = torch.cuda.is_available() and torch.cuda.is_bf16_supported()
    reporter.log(f"job {spec['job_id']}: loading {spec['model_base']} ({spec['approach']}, bf16={use_bf16})")

    tokenizer = AutoTokenizer.from_pretrained(spec["model_base"])
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    # A frozen LoRA base can live in bf16; full fine-tuning keeps fp32 master weights under bf16 autocast.
    dtype = torch.bfloat16 if use_bf16 and spec["approach"] == "lora" else torch.float32
    model = AutoModelForCausalLM.from_pretrained(spec["model_base"], dtype=dtype)
    if spec["approach"] == "lora":
        model = _with_lora(model, hp)

    train_dataset = _tokenized_split(spec["dataset"]["train"], tokenizer, spec, reporter)
    eval_dataset = None
    if spec["dataset"]["validation"]:
        eval_dataset = _tokenized_split(spec["dataset"]["validation"], tokenizer, spec, reporter)

    args = _training_arguments(spec, use_bf16=use_bf16)
    reporter_callback = ReporterCallback(reporter)
    callbacks: list[TrainerCallback] = [reporter_callback]
    early_stopping_callback = None
    if early_stopping:
        early_stopping_callback = EarlyStoppingCallback(
            early_stopping_patience=early_stopping["patience"],
            early_stopping_threshold=early_stopping["min_delta"],
        )
        callbacks.append(early_stopping_callback)
    trainer = Trainer(
        model=model,
        args=args,
        data_collator=DataCollatorForSeq2Seq(tokenizer, padding=True, label_pad_token_id=IGNORE_INDEX),
        train_dataset=train_dataset,
        eval_dataset=eval_dataset,
        processing_class=tokenizer,
        callbacks=callbacks,
    )
    # The reporter owns the output; PrinterCallback would mix log dicts into StdoutReporter's JSON lines.
    trainer.remove_callback(PrinterCallback)
    output = trainer.train(resume_from_checkpoint=spec["resume_from_checkpoint"])

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
    }
    reporter.log(f"job {spec['job_id']}: {stopped} at step {result['global_step']}/{result['total_steps']}")
    return result


def _with_lora(model: torch.nn.Module, hp: dict[str, Any]) -> torch.nn.Module:
    linear_names = sorted(
        {
            name.rsplit(".", 1)[-1]
            for name, module in model.named_modules()
            if isinstance(module, torch.nn.Linear)
        }
    )
    missing = [m for m in hp["target_modules"] if m not in linear_names]
    if missing:
        raise ValueError(
            f"hyperparameters.target_modules: {', '.join(missing)} not in model; choose from {', '.join(linear_names)}"
        )
    config = LoraConfig(
        task_type=TaskType.CAUSAL_LM,
        r=hp["lora_r"],
        lora_alpha=hp["lora_alpha"],
        lora_dropout=hp["lora_dropout"],
        target_modules=list(hp["target_modules"]),
    )
    return get_peft_model(model, config)


def _tokenized_split(path: str, tokenizer: Any, spec: dict[str, Any], reporter: Reporter) -> Any:
    raw = load_split(path)
    tokenized = tokenize_dataset(
        raw, tokenizer, task_type=spec["task_type"], max_seq_length=spec["hyperparameters"]["max_seq_length"]
    )
    dropped = len(raw) - len(tokenized)
    if dropped:
        reporter.log(f"{Path(path).name}: dropped {dropped} rows with no trainable token after truncation")
    if len(tokenized) == 0:
        raise ValueError(f"dataset: {path} has no usable rows")
    return tokenized


def _training_arguments(spec: dict[str, Any], *, use_bf16: bool) -> TrainingArguments:
    hp, checkpointing, early_stopping = spec["hyperparameters"], spec["checkpointing"], spec["early_stopping"]
    has_validation = spec["dataset"]["validation"] is not None
    wants_best = bool(early_stopping) or checkpointing["best_only"]
    return TrainingArguments(
        output_dir=spec["output_dir"],
        learning_rate=hp["learning_rate"],
        per_device_train_batch_size=hp["batch_size"],
        per_device_eval_batch_size=hp["batch_size"],
        gradient_accumulation_steps=hp["gradient_accumulation"],
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
        load_best_model_at_end=bool(early_stopping),
        metric_for_best_model="eval_loss" if wants_best else None,
        greater_is_better=False if wants_best else None,
        include_num_input_tokens_seen="non_padding",
        report_to="none",
        disable_tqdm=True,
        dataloader_pin_memory=torch.cuda.is_available(),
        remove_unused_columns=False,
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
