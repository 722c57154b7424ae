"""Components every training recipe shares: device choice, tokenizer and model loading, training
arguments, the reporter callback, best-only checkpoint pruning and the run itself (``Recipe.run``).

A recipe (experiments/training/recipes/) says what differs per task family (data, collator, loss,
metrics); everything here is the same for all of them. No Django here.
"""

from __future__ import annotations

import math
import os
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import torch
from transformers import (
    AutoTokenizer,
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
from experiments.training.fencing import fence_for
from experiments.training.modeling import load_model
from experiments.training.optim import install_full_recipe
from experiments.training.reporter import Reporter
from experiments.training.sharding import (
    TokenBalancedSampler,
    balances_tokens,
    dataset_lengths,
    enable_fsdp_off_gpu,
    fits_one_gpu,
    fsdp_training_arguments,
    save_gathered,
    uses_fsdp,
    world_size,
)
from experiments.training.spec import TrainingSpec


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


@dataclass(frozen=True)
class Device:
    on_gpu: bool
    use_bf16: bool


def pick_device(spec: TrainingSpec) -> Device:
    on_gpu = torch.cuda.is_available() and spec.hyperparameters.device != "cpu"
    return Device(on_gpu=on_gpu, use_bf16=on_gpu and torch.cuda.is_bf16_supported())


def load_tokenizer(model_base: str) -> Any:
    tokenizer = AutoTokenizer.from_pretrained(model_base)
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


def training_arguments(
    spec: TrainingSpec,
    *,
    use_bf16: bool,
    on_gpu: bool,
    fused: bool = False,
    extra: dict[str, Any] | None = None,
) -> TrainingArguments:
    hp, checkpointing = spec.hyperparameters, spec.checkpointing
    packing = spec.packing
    # With a validation split the Trainer tracks the best checkpoint (by the early-stopping metric,
    # else val_loss): the job's result, its page, the API and the registry all name that step.
    wants_best = spec.has_validation
    best_metric, greater_is_better = spec.best_metric
    return TrainingArguments(
        output_dir=spec.output_dir,
        learning_rate=hp.learning_rate,
        weight_decay=float(hp.weight_decay),
        lr_scheduler_type=hp.lr_scheduler,
        # Packed: the Trainer hands over a whole optimizer step (batch_size × gradient_accumulation
        # samples) and PackedTrainer splits it into micro-batches by token budget.
        per_device_train_batch_size=hp.batch_size * (hp.gradient_accumulation if packing else 1),
        per_device_eval_batch_size=hp.batch_size,
        gradient_accumulation_steps=1 if packing else hp.gradient_accumulation,
        num_train_epochs=hp.epochs,
        max_steps=hp.max_steps or -1,
        # transformers 5 folded warmup_ratio into warmup_steps: a float below 1 is a ratio.
        warmup_steps=float(hp.warmup_ratio),
        logging_steps=hp.logging_steps,
        seed=hp.seed,
        data_seed=hp.seed,
        bf16=use_bf16,
        # best_only saves every save_steps too (the newest checkpoint is what a resume needs); the
        # rotation keeps the newest and the best (limit 1), and the run keeps only the best at its end.
        save_strategy="steps",
        save_steps=checkpointing.save_steps,
        save_total_limit=1 if checkpointing.best_only else checkpointing.save_total_limit,
        eval_strategy="steps" if spec.has_validation else "no",
        eval_steps=(hp.eval_steps or checkpointing.save_steps) if spec.has_validation else None,
        eval_on_start=spec.eval_on_start,
        load_best_model_at_end=spec.early_stopping is not None,
        metric_for_best_model=best_metric if wants_best else None,
        greater_is_better=greater_is_better if wants_best else None,
        # Packed batches have no padding: PackedTrainer counts their tokens from the batch shape.
        include_num_input_tokens_seen="no" if packing else "non_padding",
        prediction_loss_only=spec.task_type != "classification",
        # optimizer construction: H-lean hook (the Trainer builds this optimizer unless the hook in
        # Recipe.run sets trainer.optimizer_cls_and_kwargs)
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
        # sharded training (FSDP2): experiments/training/sharding.fsdp_training_arguments
        **(extra or {}),
    )


def keep_only_best(output_dir: str | Path, best: str | None) -> list[str]:
    """best_only at the end of a run: remove every checkpoint of this attempt but the best one (the
    newest, kept for resume while the run went on, included). Returns the folders removed."""
    if not best:
        return []
    run_dir = Path(output_dir)
    fence = fence_for(run_dir)
    if fence is not None:
        fence.check()
    removed = []
    for folder in sorted(run_dir.glob(f"{PREFIX_CHECKPOINT_DIR}-*")):
        if folder.resolve() == Path(best).resolve() or not folder.is_dir():
            continue
        if fence is not None and not fence.owns(folder):
            continue
        shutil.rmtree(folder, ignore_errors=True)
        removed.append(str(folder))
    return removed


def step_of(checkpoint: str | None) -> int | None:
    if not checkpoint:
        return None
    number = Path(checkpoint).name.removeprefix(f"{PREFIX_CHECKPOINT_DIR}-")
    return int(number) if number.isdigit() else None


class Recipe:
    """One task family's training run on the shared components. Subclasses say what differs:
    labels, attention, the model's preparation, tokenization, collator, trainer class, loss and
    metrics; ``run`` is the same for every family (as torchtune keeps recipes apart from components)."""

    name: ClassVar[str] = "base"
    trainer_class: type[AtomicCheckpointTrainer] = AtomicCheckpointTrainer

    def __init__(self, spec: TrainingSpec, reporter: Reporter) -> None:
        self.spec = spec
        self.reporter = reporter
        self.device = pick_device(spec)
        self.labels: list[str] | None = None
        self.attention = "sdpa"
        self.fused = False

    # --- what a recipe decides ----------------------------------------------------------------
    def setup(self, tokenizer: Any) -> None:
        """Before the model loads: labels, attention implementation, kernels."""

    def prepare_model(self, model: Any) -> None:
        """After the model loads (e.g. compile its layers)."""

    def tokenize(self, path: str, tokenizer: Any) -> Any:
        raise NotImplementedError

    def collator(self, tokenizer: Any) -> Any:
        raise NotImplementedError

    def compute_loss_func(self, model: Any) -> Any:
        return None

    def compute_metrics(self) -> Any:
        return None

    def finish_model(self, model: Any) -> None:
        """After training, before the final save."""

    # --- the shared run -----------------------------------------------------------------------
    def run(self) -> dict[str, Any]:
        spec, reporter, device = self.spec, self.reporter, self.device
        hp = spec.hyperparameters
        output_dir = Path(spec.output_dir)
        output_dir.mkdir(parents=True, exist_ok=True)
        set_seed(hp.seed)
        reporter.log(
            f"job {spec.job_id}: loading {spec.model_base} ({spec.approach}, {spec.task_type}, "
            f"bf16={device.use_bf16})"
        )
        if device.on_gpu:
            torch.cuda.reset_peak_memory_stats()

        tokenizer = load_tokenizer(spec.model_base)
        self.setup(tokenizer)
        model = load_model(
            model_base=spec.model_base,
            approach=spec.approach,
            task_type=spec.task_type,
            hp=spec.to_dict()["hyperparameters"],
            on_gpu=device.on_gpu,
            use_bf16=device.use_bf16,
            labels=self.labels,
            random_init=spec.random_init,
            attn_implementation=self.attention,
        )
        self.prepare_model(model)
        trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
        total = sum(p.numel() for p in model.parameters())
        reporter.log(
            f"trainable parameters: {trainable:,} of {total:,} ({100 * trainable / max(total, 1):.3f}%)"
        )

        train_dataset = self.tokenize(spec.dataset.train, tokenizer)
        eval_dataset = self.tokenize(spec.dataset.validation, tokenizer) if spec.dataset.validation else None

        # Sharded training (FSDP2) for several processes when asked for or planned (sharding.py).
        sharded = uses_fsdp(
            hp.sharding,
            spec.resources,
            one_gpu_holds=hp.sharding != "auto" or world_size() < 2 or fits_one_gpu(spec),
        )
        args = training_arguments(
            spec,
            use_bf16=device.use_bf16,
            on_gpu=device.on_gpu,
            extra=fsdp_training_arguments(model) if sharded else None,
        )
        if sharded:
            reporter.log(f"sharded training: FSDP2 over {world_size()} processes")
        if args.n_gpu > 1:
            # One process trains on one GPU; several GPUs are several processes (`gpus: N`, torchrun).
            # Left alone, the Trainer would wrap the model in nn.DataParallel over every visible GPU,
            # which the packed path does not support (seen on a 2-GPU host: a 1-GPU job failed in replica 0).
            args._n_gpu = 1
        reporter_callback = ReporterCallback(reporter, warmup_steps=spec.throughput_warmup_steps)
        callbacks: list[TrainerCallback] = [reporter_callback]
        early_stopping_callback = None
        if spec.early_stopping is not None:
            early_stopping_callback = EarlyStoppingCallback(
                early_stopping_patience=spec.early_stopping.patience,
                early_stopping_threshold=spec.early_stopping.min_delta,
            )
            callbacks.append(early_stopping_callback)
        # Checkpoints are written to a staging folder and renamed into place (experiments/training/checkpoints.py).
        trainer = self.trainer_class(
            model=model,
            compute_loss_func=self.compute_loss_func(model),
            args=args,
            data_collator=self.collator(tokenizer),
            train_dataset=train_dataset,
            eval_dataset=eval_dataset,
            processing_class=tokenizer,
            callbacks=callbacks,
            compute_metrics=self.compute_metrics(),
        )
        if sharded:
            enable_fsdp_off_gpu(trainer)
        if balances_tokens(hp.sharding, hp.gpus):
            # Each step's samples dealt to the ranks by tokens (sharding.TokenBalancedSampler).
            balanced = TokenBalancedSampler(
                dataset_lengths(train_dataset),
                ranks=world_size(),
                per_rank=args.per_device_train_batch_size,
                seed=hp.seed,
            )
            trainer._get_train_sampler = lambda *_: balanced
        # The reporter owns the output; PrinterCallback would mix log dicts into StdoutReporter's JSON lines.
        trainer.remove_callback(PrinterCallback)
        # optimizer construction: H-lean hook (the Trainer is built, its optimizer not yet: set
        # trainer.optimizer_cls_and_kwargs here; spec.to_dict() is the plain-data spec)
        # Full fine-tunes: fp32 masters or a memory-lean recipe (experiments/training/optim.py).
        full_recipe = install_full_recipe(trainer, spec.to_dict(), on_gpu=device.on_gpu, reporter=reporter)
        output = trainer.train(resume_from_checkpoint=spec.resume_from_checkpoint)
        self.finish_model(model)

        final_path = output_dir / "final"
        if sharded:
            save_gathered(trainer, str(final_path))
        else:
            trainer.save_model(str(final_path))
        tokenizer.save_pretrained(str(final_path))

        if reporter_callback.cancelled:
            stopped = "cancelled"
        elif (
            early_stopping_callback is not None
            and early_stopping_callback.early_stopping_patience_counter >= spec.early_stopping.patience
        ):
            stopped = "early_stopped"
        else:
            stopped = "completed"
        best = trainer.state.best_model_checkpoint
        if spec.checkpointing.best_only and stopped != "cancelled" and args.should_save:
            # A cancelled job keeps its newest checkpoint too: a resume starts from there.
            removed = keep_only_best(output_dir, best)
            if removed:
                reporter.log(
                    f"best_only: kept {Path(best).name}, removed {', '.join(Path(r).name for r in removed)}"
                )
        final_loss = reporter_callback.latest_metrics.get("loss", output.training_loss)
        result = {
            "final_loss": float(final_loss) if final_loss is not None and math.isfinite(final_loss) else None,
            "global_step": trainer.state.global_step,
            "total_steps": trainer.state.max_steps,
            "output_dir": str(output_dir),
            "final_model_path": str(final_path),
            "stopped": stopped,
            "best_checkpoint": best,
            "best_step": step_of(best),
            "trainable_parameters": trainable,
            "total_parameters": total,
            "tokens_per_sec": reporter_callback.throughput(),  # all ranks: a collective
            "train_runtime_s": output.metrics.get("train_runtime"),
            "task_recipe": self.name,
            "full_recipe": full_recipe,
        }
        for key in ("val_loss", "val_accuracy"):
            if key in reporter_callback.latest_metrics:
                result[key] = reporter_callback.latest_metrics[key]
        result["processes"] = int(os.environ.get("WORLD_SIZE", "1"))
        result["sharding"] = "fsdp" if sharded else "none"
        result["device"] = "cpu"  # the GPU's name on a GPU (the worker's measured speed is per device)
        if device.on_gpu:
            result["device"] = torch.cuda.get_device_name(0)
            result["peak_gpu_memory_allocated_mb"] = torch.cuda.max_memory_allocated() / 2**20
            result["peak_gpu_memory_reserved_mb"] = torch.cuda.max_memory_reserved() / 2**20
        reporter.log(f"job {spec.job_id}: {stopped} at step {result['global_step']}/{result['total_steps']}")
        return result
