"""Padding-free training for causal language models. No Django here.

Three parts, each exact (the packed loss equals the padded loss on the same samples):

- ``PackedCollator``: a micro-batch of samples becomes one row with no padding (transformers'
  ``DataCollatorWithFlattening``): position ids restart at 0 for every sample, the first label of each
  sample is ignored, so no token is trained to predict across a sample boundary, and the cumulative
  sequence lengths travel with the batch.
- Per-document attention: on CUDA, ``torch.nn.attention.varlen.varlen_attn`` (FlashAttention's varlen
  kernel shipped in PyTorch) registered as the ``t4dm_varlen`` attention implementation: each sample
  attends only to itself, and no mask is built. Elsewhere SDPA, for which transformers derives the
  block-diagonal causal mask from the restarting position ids.
- Prompt tuning packs too (``pack_prompt_tuning``): every sample carries its own copy of the learned
  prompt at its first positions, as in peft's padded prompt tuning.
- ``chunked_causal_lm_loss``: the language-model head and the cross entropy are computed a chunk of
  tokens at a time and recomputed in the backward pass, so the full-vocabulary logits never exist in
  memory. On CUDA with Liger Kernel installed, its fused linear + cross-entropy kernel does the same.
"""

from __future__ import annotations

import importlib.util
import inspect
from typing import Any

import torch
import torch.nn.functional as F
from torch.utils.checkpoint import checkpoint
from transformers import DataCollatorWithFlattening

IGNORE_INDEX = -100
VARLEN_ATTENTION = "t4dm_varlen"
LOSS_CHUNK_TOKENS = 1024


class PackedCollator:
    """Flatten a micro-batch into one padding-free row. ``virtual_tokens`` (prompt tuning): each sample
    starts with that many placeholder positions (positions 0..n-1, no label), which
    ``pack_prompt_tuning``'s forward fills with the learned prompt — each packed sample sees its own
    copy of the prompt, as peft's padded prompt tuning does."""

    def __init__(self, *, varlen_kwargs: bool, virtual_tokens: int = 0) -> None:
        self._flatten = DataCollatorWithFlattening(
            return_position_ids=True,
            separator_id=IGNORE_INDEX,
            return_flash_attn_kwargs=varlen_kwargs,
        )
        self.virtual_tokens = virtual_tokens

    def __call__(self, features: list[dict[str, Any]]) -> dict[str, Any]:
        pad = [0] * self.virtual_tokens
        ignore = [IGNORE_INDEX] * self.virtual_tokens
        features = [
            {"input_ids": pad + list(f["input_ids"]), "labels": ignore + list(f["labels"])} for f in features
        ]
        batch = self._flatten(features)
        # The loss is computed from the last hidden state (see chunked_causal_lm_loss): the model's head
        # runs on the last position only, and training keeps no key/value cache.
        batch["logits_to_keep"] = 1
        batch["use_cache"] = False
        return batch


def split_packed_batch(batch: dict[str, Any], max_tokens: int) -> list[dict[str, Any]]:
    """Cut a flattened batch at sample boundaries into micro-batches of at most ``max_tokens`` tokens
    (a sample longer than that gets a micro-batch of its own). Works on the host-side tensors."""
    positions = batch["position_ids"][0]
    total = int(positions.shape[0])
    starts = (positions == 0).nonzero().flatten().tolist() + [total]
    if total <= max_tokens:
        return [batch]
    groups: list[list[int]] = []  # sample starts per micro-batch
    for start, end in zip(starts, starts[1:], strict=False):
        if groups and end - groups[-1][0] <= max_tokens:
            groups[-1].append(start)
        else:
            groups.append([start])
    out = []
    for group_index, group in enumerate(groups):
        end = groups[group_index + 1][0] if group_index + 1 < len(groups) else total
        begin = group[0]
        part = {key: value for key, value in batch.items() if not torch.is_tensor(value) or value.dim() < 2}
        for key in ("input_ids", "labels", "position_ids", "seq_idx"):
            if key in batch:
                part[key] = batch[key][:, begin:end]
        if "cu_seq_lens_q" in batch:
            bounds = [s - begin for s in group] + [end - begin]
            cu = torch.tensor(bounds, dtype=batch["cu_seq_lens_q"].dtype)
            longest = max(b - a for a, b in zip(bounds, bounds[1:], strict=False))
            part.update(cu_seq_lens_q=cu, cu_seq_lens_k=cu, max_length_q=longest, max_length_k=longest)
        out.append(part)
    return out


def varlen_available() -> bool:
    if not torch.cuda.is_available():
        return False
    try:
        from torch.nn.attention.varlen import varlen_attn  # noqa: F401
    except ImportError:
        return False
    return True


def _varlen_call_options() -> dict[str, Any]:
    """Causal masking and GQA keywords as this PyTorch's varlen_attn spells them."""
    from torch.nn.attention.varlen import varlen_attn

    params = inspect.signature(varlen_attn).parameters
    options: dict[str, Any] = {}
    if "window_size" in params:
        options["window_size"] = (-1, 0)  # causal
    elif "is_causal" in params:
        options["is_causal"] = True
    else:  # pragma: no cover - a PyTorch whose varlen_attn has no causal option cannot be used
        raise RuntimeError("torch.nn.attention.varlen.varlen_attn has no causal option")
    options["_gqa"] = "enable_gqa" in params
    return options


def varlen_attention_forward(
    module: torch.nn.Module,
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    attention_mask: torch.Tensor | None,
    scaling: float | None = None,
    dropout: float = 0.0,
    **kwargs: Any,
) -> tuple[torch.Tensor, None]:
    """transformers attention interface: (batch=1, heads, tokens, dim) in, (1, tokens, heads, dim) out."""
    cu_seq_q = kwargs.get("cu_seq_lens_q")
    if cu_seq_q is None or query.shape[0] != 1 or attention_mask is not None:
        # Not a packed batch (generation, a padded evaluation batch): plain SDPA.
        from transformers.integrations.sdpa_attention import sdpa_attention_forward

        return sdpa_attention_forward(
            module, query, key, value, attention_mask, dropout=dropout, scaling=scaling, **kwargs
        )
    from torch.nn.attention.varlen import varlen_attn

    options = dict(_VARLEN_OPTIONS) or _varlen_call_options()
    gqa = options.pop("_gqa")
    q = query[0].transpose(0, 1)  # (tokens, heads, dim)
    k = key[0].transpose(0, 1)
    v = value[0].transpose(0, 1)
    # FlashAttention takes bf16/fp16 only; fp32 master weights (full fine-tuning, QLoRA's fp32 norms)
    # under autocast hand it fp32 rotary outputs: cast to the autocast dtype, as SDPA's flash path would.
    half = (torch.float16, torch.bfloat16)
    if q.dtype not in half or k.dtype not in half or v.dtype not in half or not q.dtype == k.dtype == v.dtype:
        target = torch.get_autocast_dtype("cuda") if torch.is_autocast_enabled("cuda") else torch.bfloat16
        q, k, v = q.to(target), k.to(target), v.to(target)
    if k.shape[1] != q.shape[1]:
        if gqa:
            options["enable_gqa"] = True
        else:
            repeat = q.shape[1] // k.shape[1]
            k = k.repeat_interleave(repeat, dim=1)
            v = v.repeat_interleave(repeat, dim=1)
    cu_seq_q = cu_seq_q.to(device=q.device, dtype=torch.int32)
    cu_seq_k = kwargs.get("cu_seq_lens_k")
    cu_seq_k = cu_seq_q if cu_seq_k is None else cu_seq_k.to(device=q.device, dtype=torch.int32)
    max_q = int(kwargs.get("max_length_q") or query.shape[2])
    max_k = int(kwargs.get("max_length_k") or max_q)
    out = varlen_attn(q, k, v, cu_seq_q, cu_seq_k, max_q, max_k, scale=scaling, **options)
    return out.unsqueeze(0), None


_VARLEN_OPTIONS: dict[str, Any] = {}


def register_varlen_attention() -> str:
    """Register ``t4dm_varlen`` with transformers; returns the name to pass as attn_implementation."""
    from transformers import AttentionInterface

    if not _VARLEN_OPTIONS:
        _VARLEN_OPTIONS.update(_varlen_call_options())
    AttentionInterface.register(VARLEN_ATTENTION, varlen_attention_forward)
    return VARLEN_ATTENTION


def liger_available() -> bool:
    return torch.cuda.is_available() and importlib.util.find_spec("liger_kernel") is not None


def _ce_sum(hidden: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None, labels: torch.Tensor):
    logits = F.linear(hidden, weight, bias).float()
    return F.cross_entropy(logits, labels, ignore_index=IGNORE_INDEX, reduction="sum")


def chunked_causal_lm_loss(
    hidden: torch.Tensor,
    head: torch.nn.Module,
    labels: torch.Tensor,
    *,
    num_items_in_batch: torch.Tensor | int | None = None,
    chunk_tokens: int = LOSS_CHUNK_TOKENS,
    fused: bool = False,
    compute_dtype: torch.dtype | None = None,
) -> torch.Tensor:
    """Causal-LM cross entropy of ``head(hidden)`` against ``labels`` shifted by one, as transformers'
    ForCausalLMLoss computes it (fp32 logits; sum / num_items_in_batch, else the mean), without ever
    holding the (tokens × vocabulary) logits: chunks are recomputed in the backward pass."""
    shift_labels = F.pad(labels, (0, 1), value=IGNORE_INDEX)[..., 1:].reshape(-1)
    flat = hidden.reshape(-1, hidden.shape[-1])
    keep = shift_labels != IGNORE_INDEX
    weight, bias = head.weight, getattr(head, "bias", None)
    if compute_dtype is not None:
        # The loss runs outside the model's autocast region: the head's matrix multiplies would run in
        # fp32 with fp32 master weights (full fine-tuning) or QLoRA's fp32 head. Cast to the compute
        # dtype as autocast would; gradients flow back through the casts to the fp32 weights.
        flat, weight = flat.to(compute_dtype), weight.to(compute_dtype)
        bias = bias.to(compute_dtype) if bias is not None else None
    if fused and bias is None:
        from liger_kernel.transformers import LigerFusedLinearCrossEntropyLoss

        total = LigerFusedLinearCrossEntropyLoss(ignore_index=IGNORE_INDEX, reduction="sum")(
            weight, flat, shift_labels
        )
    else:
        total = flat.new_zeros((), dtype=torch.float32)
        for start in range(0, flat.shape[0], chunk_tokens):
            part = slice(start, start + chunk_tokens)
            total = total + checkpoint(
                _ce_sum, flat[part], weight, bias, shift_labels[part], use_reentrant=False
            )
    if num_items_in_batch is None:
        return total / keep.sum().clamp(min=1)
    if torch.is_tensor(num_items_in_batch):
        num_items_in_batch = num_items_in_batch.to(total.device)
    return total / num_items_in_batch


class FinalHiddenState:
    """Catches the decoder's last hidden state with a forward hook, so the loss can be computed from it
    while the forward pass still goes through the outer (peft / DDP) wrapper."""

    def __init__(self, causal_lm: torch.nn.Module) -> None:
        self.value: torch.Tensor | None = None
        decoder = causal_lm.get_decoder()
        self._handle = decoder.register_forward_hook(self._keep)
        self.head = causal_lm.get_output_embeddings()

    def _keep(self, module: torch.nn.Module, args: Any, output: Any) -> None:
        self.value = output.last_hidden_state if hasattr(output, "last_hidden_state") else output[0]

    def take(self) -> torch.Tensor:
        value, self.value = self.value, None
        if value is None:
            raise RuntimeError("the decoder's forward hook saw no hidden state")
        return value

    def remove(self) -> None:
        self._handle.remove()


def pack_prompt_tuning(model: torch.nn.Module) -> int:
    """Let a peft prompt-tuning model train on packed rows (``PackedCollator(virtual_tokens=n)``):
    its forward embeds the row and puts the learned prompt at every sample's placeholder positions
    (position ids below n), then runs the base model with those embeddings and the packed position ids
    — instead of peft's forward, which would prepend one prompt to the whole row. Returns n."""
    config = model.peft_config[model.active_adapter]
    virtual = int(config.num_virtual_tokens)
    encoder = model.prompt_encoder[model.active_adapter]
    base = model.get_base_model()

    def forward(input_ids: torch.Tensor, position_ids: torch.Tensor, **kwargs: Any) -> Any:
        kwargs.pop("attention_mask", None)  # packed rows carry none: samples are told apart by positions
        embeds = base.get_input_embeddings()(input_ids)
        prompt = encoder(torch.arange(virtual, device=input_ids.device)).to(embeds.dtype)
        placeholder = (position_ids < virtual).unsqueeze(-1)
        embeds = torch.where(placeholder, prompt[position_ids.clamp(max=virtual - 1)], embeds)
        return base(inputs_embeds=embeds, position_ids=position_ids, **kwargs)

    model.forward = forward
    return virtual


def base_causal_lm(model: torch.nn.Module) -> torch.nn.Module:
    """The transformers *ForCausalLM inside a peft wrapper (or the model itself)."""
    get_base = getattr(model, "get_base_model", None)
    return get_base() if callable(get_base) else model
