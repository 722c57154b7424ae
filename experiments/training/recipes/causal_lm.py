"""Causal language modelling (chat, instruction, completion): loss on the response tokens.

Where packing applies (full, LoRA, QLoRA, prompt tuning), batches are padding-free with per-document attention and
the loss comes from the last hidden state through chunked (or Liger's fused) linear + cross entropy;
on CUDA each decoder layer may be compiled. Otherwise batches are padded (DataCollatorForSeq2Seq).
"""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Any, ClassVar

import torch
from transformers import DataCollatorForSeq2Seq

from experiments.training.checkpoints import AtomicCheckpointTrainer
from experiments.training.components import Recipe
from experiments.training.data import IGNORE_INDEX, load_split, tokenize_dataset
from experiments.training.packing import (
    FinalHiddenState,
    PackedCollator,
    base_causal_lm,
    chunked_causal_lm_loss,
    liger_available,
    pack_prompt_tuning,
    register_varlen_attention,
    split_packed_batch,
    varlen_available,
)
from experiments.training.resources import micro_batch_tokens
from experiments.training.sharding import agree_micro_batches


class CausalLMRecipe(Recipe):
    name: ClassVar[str] = "causal_lm"

    def setup(self, tokenizer: Any) -> None:
        hp, on_gpu = self.spec.hyperparameters, self.device.on_gpu
        if self.spec.packing and on_gpu and varlen_available():
            self.attention = register_varlen_attention()
        self.fused = on_gpu and hp.fused_kernels in ("auto", True) and liger_available()
        if hp.fused_kernels is True and on_gpu and not self.fused:
            raise ValueError("hyperparameters.fused_kernels: needs the liger-kernel package on the worker")
        if self.spec.packing:
            self.trainer_class = PackedTrainer
            PackedTrainer.micro_batch_tokens = micro_batch_tokens(self.spec.to_dict()["hyperparameters"])

    def prepare_model(self, model: Any) -> None:
        packing = self.spec.packing
        if packing and self.spec.approach == "prompt_tuning":
            self.virtual_tokens = pack_prompt_tuning(model)
        compiled = self.device.on_gpu and self.spec.hyperparameters.compile in ("auto", True) and packing
        if compiled:
            compile_decoder_layers(model)
        if packing:
            self.reporter.log(
                f"padding-free batches, attention {self.attention}, "
                f"loss {'Liger fused linear+CE' if self.fused else 'chunked linear+CE'}, "
                f"compiled layers {compiled}"
            )

    def tokenize(self, path: str, tokenizer: Any) -> Any:
        raw = load_split(path)
        tokenized = tokenize_dataset(
            raw,
            tokenizer,
            task_type=self.spec.task_type,
            max_seq_length=self.spec.hyperparameters.max_seq_length,
        )
        dropped = len(raw) - len(tokenized)
        if dropped:
            self.reporter.log(
                f"{Path(path).name}: dropped {dropped} rows with no trainable token after truncation"
            )
        if len(tokenized) == 0:
            raise ValueError(f"dataset: {path} has no usable rows")
        return tokenized

    def collator(self, tokenizer: Any) -> Any:
        if self.spec.packing:
            return PackedCollator(
                varlen_kwargs=self.attention != "sdpa", virtual_tokens=getattr(self, "virtual_tokens", 0)
            )
        return DataCollatorForSeq2Seq(tokenizer, padding=True, label_pad_token_id=IGNORE_INDEX)

    def compute_loss_func(self, model: Any) -> Any:
        if not self.spec.packing:
            return None
        return PackedLoss(
            model, fused=self.fused, compute_dtype=torch.bfloat16 if self.device.use_bf16 else None
        )

    def finish_model(self, model: Any) -> None:
        if self.attention != "sdpa":
            # The saved model must load anywhere: our attention name is registered only in this process.
            base_causal_lm(model).config._attn_implementation = "sdpa"


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
        if self.is_fsdp_enabled:
            # Every FSDP forward/backward is a collective: all ranks run as many micro-batches.
            micro_batches = agree_micro_batches(micro_batches)
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
