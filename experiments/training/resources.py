"""Resource estimate from a model's real shapes (read from its config, never guessed from its name).

No Django here: the platform wraps this with its price table (settings.GPU_PRICES), and the GPU box
can print the same estimate next to a measurement.

Memory (bytes), for one GPU and a batch of ``batch_size`` × ``max_seq_length`` tokens (the worst case):
- weights: fp32 for full fine-tuning (master weights under bf16 autocast), the compute dtype for a
  frozen base (bf16 on GPU), NF4 for QLoRA's quantized Linear layers (4 bits + the double-quantized
  block scales ≈ 0.516 bytes/param) with the rest (embeddings, norms, head) in bf16;
- trainable state: fp32 weight + fp32 gradient + two fp32 AdamW moments = 16 bytes/trainable param
  (peft keeps adapters in fp32);
- activations kept for backward, per token and layer: attention q/k/v/out (sdpa stores no s×s
  matrix), SwiGLU's three I-wide tensors, the fp32 RMSNorm inputs, adapter inputs; full fine-tuning
  also keeps every Linear input for the weight gradients; plus the logits (bf16, their fp32 upcast
  and its gradient); gradient checkpointing keeps one hidden state per layer instead;
- a fixed CUDA context/workspace allowance.
Time: the tokens/s a registered worker measured on the device the job would run on, for the model's
size class (SIZE_CLASSES) and approach, when there is such a measurement (CPU workers too); else
training FLOPs (6·N per token for full, 4·N for frozen bases that skip weight gradients, plus
attention) over peak bf16 × an assumed MFU.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

# Shapes of well-known bases, used only when the id is not a local folder (no hub access here).
KNOWN_CONFIGS: dict[str, dict[str, Any]] = {
    "llama-3-8b": {
        "model_type": "llama",
        "hidden_size": 4096,
        "intermediate_size": 14336,
        "num_hidden_layers": 32,
        "num_attention_heads": 32,
        "num_key_value_heads": 8,
        "vocab_size": 128256,
        "tie_word_embeddings": False,
    },
    "llama-3-70b": {
        "model_type": "llama",
        "hidden_size": 8192,
        "intermediate_size": 28672,
        "num_hidden_layers": 80,
        "num_attention_heads": 64,
        "num_key_value_heads": 8,
        "vocab_size": 128256,
        "tie_word_embeddings": False,
    },
    "llama-3.2-1b": {
        "model_type": "llama",
        "hidden_size": 2048,
        "intermediate_size": 8192,
        "num_hidden_layers": 16,
        "num_attention_heads": 32,
        "num_key_value_heads": 8,
        "vocab_size": 128256,
        "tie_word_embeddings": True,
    },
    "llama-3.2-3b": {
        "model_type": "llama",
        "hidden_size": 3072,
        "intermediate_size": 8192,
        "num_hidden_layers": 28,
        "num_attention_heads": 24,
        "num_key_value_heads": 8,
        "vocab_size": 128256,
        "tie_word_embeddings": True,
    },
    "mistral-7b": {
        "model_type": "mistral",
        "hidden_size": 4096,
        "intermediate_size": 14336,
        "num_hidden_layers": 32,
        "num_attention_heads": 32,
        "num_key_value_heads": 8,
        "vocab_size": 32000,
        "tie_word_embeddings": False,
    },
    "qwen2.5-7b": {
        "model_type": "qwen2",
        "hidden_size": 3584,
        "intermediate_size": 18944,
        "num_hidden_layers": 28,
        "num_attention_heads": 28,
        "num_key_value_heads": 4,
        "vocab_size": 152064,
        "tie_word_embeddings": False,
    },
    "qwen2.5-0.5b": {
        "model_type": "qwen2",
        "hidden_size": 896,
        "intermediate_size": 4864,
        "num_hidden_layers": 24,
        "num_attention_heads": 14,
        "num_key_value_heads": 2,
        "vocab_size": 151936,
        "tie_word_embeddings": True,
    },
}
ALIASES = {
    "meta-llama/meta-llama-3-8b": "llama-3-8b",
    "meta-llama/llama-3.1-8b": "llama-3-8b",
    "meta-llama/meta-llama-3-70b": "llama-3-70b",
    "meta-llama/llama-3.1-70b": "llama-3-70b",
    "meta-llama/llama-3.2-1b": "llama-3.2-1b",
    "meta-llama/llama-3.2-3b": "llama-3.2-3b",
    "mistralai/mistral-7b-v0.1": "mistral-7b",
    "qwen/qwen2.5-7b": "qwen2.5-7b",
    "qwen/qwen2.5-0.5b": "qwen2.5-0.5b",
}

# name, usable memory in GiB (what torch.cuda reports as total_memory: an "80GB" card is not 80 GiB),
# peak dense bf16 TFLOP/s, USD per hour (typical on-demand cloud price, 2026). The name keeps the
# vendor's marketing size (GB); plans compare estimates with the usable GiB.
GPUS: list[tuple[str, float, float, float]] = [
    ("T4-16GB", 15360 / 1024, 65, 0.35),
    ("L4-24GB", 23034 / 1024, 121, 0.80),
    ("A100-40GB", 40960 / 1024, 312, 1.60),
    ("A100-80GB", 81920 / 1024, 312, 2.00),
    ("H100-80GB", 81559 / 1024, 989, 3.00),
    ("H200-141GB", 143771 / 1024, 989, 3.80),
]
# GPUs without bf16 (the engine trains in fp32 there): no bf16-weight recipe on them.
NO_BF16_GPUS = ("T4-16GB",)
# A plan leaves this share of a GPU's memory free (allocator fragmentation, caches); same as optim.py.
PLAN_HEADROOM = 0.92
ASSUMED_MFU = 0.15  # plain HF Trainer + peft with per-batch padding measured ~13-16 % on an H200
# The engine's packed GPU path measured 45 % (8B LoRA), 41 % (8B QLoRA), 21 % (1B full) on an H200.
PACKED_MFU = 0.35
NF4_BYTES_PER_PARAM = (
    0.5 + 1 / 64 * (1 / 256 * 4 + 1) / 1
)  # 4-bit + fp8 absmax per 64 (+fp32 per 256 of them)
CUDA_OVERHEAD_BYTES = 0.6 * 2**30


@dataclass(frozen=True)
class ModelShape:
    total_params: int
    hidden_size: int
    intermediate_size: int
    num_layers: int
    kv_size: int
    vocab_size: int
    linear_params: int  # in Linear layers of the blocks (what NF4 quantizes)
    linear_in_out: dict[str, tuple[int, int, int]]  # short name → (in, out, count)
    source: str


def resolve_known(model_base: str) -> str | None:
    key = model_base.lower().strip()
    key = ALIASES.get(key, key)
    return key if key in KNOWN_CONFIGS else None


def model_shape(model_base: str, task_type: str = "chat") -> ModelShape | None:
    """Shapes from the model's config.json (a local folder), else from the known-config table."""
    from transformers import AutoConfig

    if (Path(model_base) / "config.json").is_file():
        config = AutoConfig.from_pretrained(model_base)
        source = "config.json"
    elif known := resolve_known(model_base):
        params = dict(KNOWN_CONFIGS[known])
        config = AutoConfig.for_model(params.pop("model_type"), **params)
        source = f"known shape of {known}"
    else:
        return None
    return shape_from_config(config, task_type=task_type, source=source)


def shape_from_config(config: Any, *, task_type: str = "chat", source: str = "config") -> ModelShape:
    import torch
    from transformers import AutoModelForCausalLM, AutoModelForSequenceClassification

    auto = AutoModelForSequenceClassification if task_type == "classification" else AutoModelForCausalLM
    with torch.device("meta"):
        model = auto.from_config(config)
    total = sum(p.numel() for p in model.parameters())
    linear_in_out: dict[str, tuple[int, int, int]] = {}
    linear_params = 0
    head_names = {"lm_head", "score", "classifier"}
    for name, module in model.named_modules():
        if isinstance(module, torch.nn.Linear):
            short = name.rsplit(".", 1)[-1]
            if short in head_names:
                continue
            linear_params += module.weight.numel()
            fan_in, fan_out, count = linear_in_out.get(short, (module.in_features, module.out_features, 0))
            linear_in_out[short] = (fan_in, fan_out, count + 1)
    hidden = int(getattr(config, "hidden_size", 0) or getattr(config, "d_model", 0))
    heads = int(getattr(config, "num_attention_heads", 1) or 1)
    kv_heads = int(getattr(config, "num_key_value_heads", None) or heads)
    head_dim = int(getattr(config, "head_dim", None) or hidden // heads)
    return ModelShape(
        total_params=total,
        hidden_size=hidden,
        intermediate_size=int(getattr(config, "intermediate_size", 4 * hidden) or 4 * hidden),
        num_layers=int(getattr(config, "num_hidden_layers", 1)),
        kv_size=kv_heads * head_dim,
        vocab_size=int(getattr(config, "vocab_size", 0)),
        linear_params=linear_params,
        linear_in_out=linear_in_out,
        source=source,
    )


def trainable_params(shape: ModelShape, approach: str, hp: dict[str, Any]) -> int:
    if approach == "full":
        return shape.total_params
    if approach == "prompt_tuning":
        return int(hp.get("num_virtual_tokens", 20)) * shape.hidden_size
    r = int(hp.get("lora_r", 16))
    return sum(
        r * (fan_in + fan_out) * count
        for name, (fan_in, fan_out, count) in shape.linear_in_out.items()
        if name in set(hp.get("target_modules") or [])
    )


# Prompt tuning packs too: every packed sample carries its own copy of the prompt (packing.py).
PACKABLE_APPROACHES = ("full", "lora", "qlora", "prompt_tuning")
# Bytes per parameter beyond the weights for a full fine-tune, by recipe (experiments/training/optim.py):
# fp32 grad + two fp32 moments; bf16 grad + two bf16 moments + bf16 Kahan compensation; fp32 grad +
# two 8-bit moments (bitsandbytes' block-wise scales add ~0.03 bytes).
FULL_STATE_BYTES = {"fp32_master": 12.0, "bf16_kahan": 8.0, "adamw_8bit": 6.0}


def full_recipe(approach: str, hp: dict[str, Any]) -> str:
    """The recipe the estimate assumes: the configured one; "auto" counts as fp32 masters (plans try
    the lean recipes when those do not fit, as the engine does)."""
    recipe = hp.get("full_recipe") or "auto"
    return recipe if approach == "full" and recipe in FULL_STATE_BYTES else "fp32_master"


def micro_batch_tokens(hp: dict[str, Any]) -> int:
    """Token budget of one packed micro-batch: the configured one, else three quarters of a padded
    batch of full-length rows (batch_size × max_seq_length), never less than one full row. Packed
    micro-batches carry only real tokens, so typical ones hold several times the real tokens of a
    padded batch while peak memory stays below the padded run's (docs/training.md, "Training speed")."""
    if hp.get("micro_batch_tokens"):
        return int(hp["micro_batch_tokens"])
    seq = int(hp.get("max_seq_length", 512))
    return max(seq, int(hp.get("batch_size", 4)) * seq * 3 // 4)


def packable_run(approach: str, task_type: str) -> bool:
    """Padding-free batches apply to generative tasks (full, LoRA, QLoRA and prompt tuning)."""
    return task_type != "classification" and approach in PACKABLE_APPROACHES


def packs(approach: str, hp: dict[str, Any], task_type: str = "chat") -> bool:
    """Whether the engine trains this run padding-free (see engine.normalize_spec)."""
    return packable_run(approach, task_type) and hp.get("packing", "auto") in ("auto", True)


def memory_breakdown(
    shape: ModelShape, approach: str, hp: dict[str, Any], *, on_gpu: bool = True, task_type: str = "chat"
) -> dict[str, float]:
    """Peak training memory in bytes, by part ("overhead" is the CUDA context, which PyTorch's
    allocator statistics do not include)."""
    if on_gpu and packs(approach, hp, task_type):
        return _packed_gpu_breakdown(shape, approach, hp)
    act = 2 if on_gpu else 4  # bf16 autocast on GPU; fp32 on CPU
    recipe = full_recipe(approach, hp)
    if approach == "full":
        weights = shape.total_params * (2.0 if recipe == "bf16_kahan" else 4.0)
    elif approach == "qlora":
        weights = shape.linear_params * NF4_BYTES_PER_PARAM + (shape.total_params - shape.linear_params) * act
    else:
        weights = shape.total_params * float(act)
    trainable = trainable_params(shape, approach, hp)
    # the full model's weights are already counted above; its fp32 grad + AdamW moments are 12 bytes more
    state = trainable * (FULL_STATE_BYTES[recipe] if approach == "full" else 16.0)

    tokens = int(hp.get("batch_size", 4)) * int(hp.get("max_seq_length", 512))
    if approach == "prompt_tuning":
        tokens += int(hp.get("batch_size", 4)) * int(hp.get("num_virtual_tokens", 20))
    layer = _layer_activation_elements(shape, approach, hp) * act + 2 * shape.hidden_size * 4  # + fp32 norms
    if hp.get("gradient_checkpointing"):
        # one hidden state per layer kept; one layer's activations live again during its recompute
        activations = tokens * (shape.num_layers * shape.hidden_size * act + layer)
    else:
        activations = tokens * shape.num_layers * layer
    logits = tokens * shape.vocab_size * (act + 4 + 4)
    return {
        "weights": weights,
        "trainable_state": state,
        "activations": activations,
        "logits": logits,
        "overhead": CUDA_OVERHEAD_BYTES if on_gpu else 0.0,
    }


def _packed_gpu_breakdown(shape: ModelShape, approach: str, hp: dict[str, Any]) -> dict[str, float]:
    """The engine's default GPU path: packed micro-batches of ``micro_batch_tokens`` tokens, compiled
    decoder layers, FlashAttention varlen, Liger's fused linear + cross entropy (no logits kept).

    Per token and layer the backward pass keeps (bf16): q and the key/value heads expanded to all
    query heads plus the attention output (4·h), SwiGLU's gate and up projections (2·I; the compiled
    layer recomputes the rest), the two RMSNorm inputs (fp32 when the residual stream is fp32: full
    fine-tuning's fp32 master weights, QLoRA's fp32 norms), LoRA's dropped-out inputs and their masks,
    and for full fine-tuning the Linear inputs the weight gradients need (2·h + I). Weights: full
    fine-tuning keeps fp32 masters plus autocast's bf16 copy of every matrix; QLoRA keeps NF4 blocks
    plus fp32 everything else (peft's prepare_model_for_kbit_training) and a bf16 copy of the head.
    Prompt tuning keeps what LoRA keeps less the adapters' inputs (the frozen Linear layers need no
    inputs for weight gradients), and only the virtual-token embeddings as trainable state."""
    h, inter, layers = shape.hidden_size, shape.intermediate_size, shape.num_layers
    head = shape.vocab_size * h
    tokens = micro_batch_tokens(hp)
    if approach == "prompt_tuning":
        # every packed sample carries the virtual tokens; the budget counts them, a lone sample may not fit it
        tokens = max(tokens, int(hp.get("max_seq_length", 512)) + int(hp.get("num_virtual_tokens", 20)))
    trainable = trainable_params(shape, approach, hp)
    recipe = full_recipe(approach, hp)
    if approach == "full" and recipe == "bf16_kahan":
        # bf16 weights, no autocast copies; bf16 grad + two bf16 moments + the bf16 compensation
        weights = shape.total_params * 2.0
        state = shape.total_params * FULL_STATE_BYTES[recipe]
        loss, residual = head * 2.0, 2
    elif approach == "full":
        weights = shape.total_params * 4.0 + (shape.linear_params + head) * 2.0
        state = shape.total_params * FULL_STATE_BYTES[recipe]
        loss = head * 2.0  # the fused loss's gradient for the (bf16 copy of the) head
        residual = 4
    elif approach == "qlora":
        weights = (
            shape.linear_params * NF4_BYTES_PER_PARAM
            + (shape.total_params - shape.linear_params) * 4.0
            + head * 2.0
        )
        state, loss, residual = trainable * 16.0, 0.0, 4
    else:
        weights, state, loss, residual = shape.total_params * 2.0, trainable * 16.0, 0.0, 2
    elements = 4 * h + 2 * inter
    byte_tensors = 2 * h * residual  # RMSNorm inputs
    if approach in ("lora", "qlora"):
        targets = set(hp.get("target_modules") or [])
        for name, (fan_in, _, _) in shape.linear_in_out.items():
            if name in targets:
                elements += fan_in + int(hp.get("lora_r", 16))
                if float(hp.get("lora_dropout", 0.1)) > 0:
                    byte_tensors += fan_in  # dropout mask
    if approach == "full":
        elements += 2 * h + inter
    layer = elements * 2 + byte_tensors
    if hp.get("gradient_checkpointing"):
        # one bf16 hidden state per layer kept; one layer's activations live again during its recompute
        activations = tokens * (layers * h * residual + layer)
    else:
        activations = tokens * layers * layer
    return {
        "weights": weights,
        "trainable_state": state,
        "activations": activations,
        "logits": loss,
        "overhead": CUDA_OVERHEAD_BYTES,
    }


def _layer_activation_elements(shape: ModelShape, approach: str, hp: dict[str, Any]) -> float:
    h, inter, kv = shape.hidden_size, shape.intermediate_size, shape.kv_size
    elements = 2 * h + 2 * kv + 3 * inter  # sdpa q, k, v, out; SwiGLU gate-act input/output and up
    if approach in ("lora", "qlora"):
        targets = set(hp.get("target_modules") or [])
        elements += sum(fan_in for name, (fan_in, _, _) in shape.linear_in_out.items() if name in targets)
        elements += len(targets) * int(hp.get("lora_r", 16))
    if approach == "full":
        elements += 3 * h + inter  # inputs of qkv, o, gate/up, down for the weight gradients
    return float(elements)


def training_flops(shape: ModelShape, approach: str, hp: dict[str, Any], tokens: float) -> float:
    per_token = (6 if approach == "full" else 4) * shape.total_params
    seq = int(hp.get("max_seq_length", 512))
    attention = (3 if approach == "full" else 2) * 2 * shape.num_layers * seq * shape.hidden_size
    return (per_token + attention) * tokens


def fmt_params(n: float) -> str:
    """A parameter count as people write it: 8.03B, 124M, 202k (never 0.000202B)."""
    for scale, suffix in ((1e9, "B"), (1e6, "M"), (1e3, "k")):
        if n >= scale:
            return f"{n / scale:.3g}{suffix}"
    return str(int(n))


def fmt_hours(hours: float) -> str:
    if hours < 1 / 60:
        seconds = max(1, round(hours * 3600))
        return f"{seconds} second{'s' if seconds != 1 else ''}"
    if hours < 1:
        return f"{round(hours * 60)} minutes"
    return f"{hours:.1f} hours".replace(".0 hours", " hours")


def configurations(approach: str, hp: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    """The ways the engine may run this job, in the order it prefers them: (recipe label, the
    hyperparameters the estimate sees). A full fine-tune with ``full_recipe: auto`` keeps fp32 masters
    when they fit, else bf16 weights + Kahan AdamW, and turns on activation checkpointing when even
    that does not fit (experiments/training/optim.py); an explicit lean recipe may add checkpointing."""
    if approach != "full":
        return [(approach, hp)]
    requested = hp.get("full_recipe") or "auto"
    if requested == "fp32_master":
        return [("fp32_master", hp)]
    recipes = ["fp32_master", "bf16_kahan"] if requested == "auto" else [requested]
    out = [(r, {**hp, "full_recipe": r}) for r in recipes]
    if not hp.get("gradient_checkpointing"):
        lean = recipes[-1]
        out.append((f"{lean}+checkpointing", {**hp, "full_recipe": lean, "gradient_checkpointing": True}))
    return out


def _fits(total_bytes: float, gpu_gib: float) -> bool:
    return total_bytes <= gpu_gib * 2**30 * PLAN_HEADROOM


def plan_job(
    shape: ModelShape,
    approach: str,
    hp: dict[str, Any],
    *,
    gpus: list[tuple[str, float, float, float]],
    task_type: str = "chat",
) -> dict[str, Any]:
    """The recipe the engine prefers (fp32 masters before the lean ones, no added checkpointing before
    added checkpointing) on the smallest known GPU (× 1) that holds it, or ``fits: False`` with what
    to change and ``sharded``: the fewest GPUs that hold it with sharded training (FSDP2, ``gpus: N``
    with ``sharding: fsdp``; plain ``gpus: N`` is data parallel, a whole copy per GPU), or None."""
    options = configurations(approach, hp)
    for recipe, variant in options:  # the engine's preferred way first, on the smallest GPU that holds it
        parts = memory_breakdown(shape, approach, variant, task_type=task_type)
        for name, gib, _, _ in sorted(gpus, key=lambda g: (g[1], g[3])):
            if recipe.startswith("bf16") and name in NO_BF16_GPUS:
                continue
            if _fits(sum(parts.values()), gib):
                return {
                    "fits": True,
                    "gpu": name,
                    "gpu_count": 1,
                    "gpu_memory_gib": round(gib, 1),
                    "usable_gib": round(gib * PLAN_HEADROOM, 1),
                    "recipe": recipe,
                    "gradient_checkpointing": bool(variant.get("gradient_checkpointing")),
                    "hyperparameters": variant,
                    "parts": parts,
                }
    recipe, variant = options[-1]  # the leanest way the engine could run it as configured
    # no single GPU holds it: several GPUs with sharded training (FSDP2), when some count does
    sharded = plan_sharded(shape, approach, hp, gpus=gpus, task_type=task_type)
    return {
        "fits": False,
        "sharded": sharded,
        "gpu": None,
        "gpu_count": 0,
        "recipe": recipe,
        "gradient_checkpointing": bool(variant.get("gradient_checkpointing")),
        "hyperparameters": variant,
        "parts": memory_breakdown(shape, approach, variant, task_type=task_type),
        "changes": _changes(shape, approach, variant, gpus=gpus, task_type=task_type, sharded=sharded),
    }


def _changes(
    shape: ModelShape,
    approach: str,
    hp: dict[str, Any],
    *,
    gpus: list[tuple[str, float, float, float]],
    task_type: str,
    sharded: dict[str, Any] | None = None,
) -> list[str]:
    """What would make a job that fits no known GPU fit one: each change with the GPU it would fit."""

    def smallest(approach_: str, hp_: dict[str, Any]) -> str | None:
        for recipe_approach, variant in configurations(approach_, hp_):
            del recipe_approach
            total = sum(memory_breakdown(shape, approach_, variant, task_type=task_type).values())
            for name, gib, _, _ in sorted(gpus, key=lambda g: g[1]):
                if _fits(total, gib):
                    return f"{name} ({total / 2**30:.1f} GiB)"
        return None

    tried: list[tuple[str, str, dict[str, Any]]] = []
    if approach == "full":
        tried.append(("use LoRA (approach: lora)", "lora", hp))
    if approach in ("full", "lora") and task_type != "classification":
        tried.append(("use QLoRA (approach: qlora)", "qlora", hp))
    if not hp.get("gradient_checkpointing"):
        tried.append(("turn on gradient_checkpointing", approach, {**hp, "gradient_checkpointing": True}))
    seq = int(hp.get("max_seq_length", 512))
    while seq > 128:
        seq //= 2
        tried.append((f"shorter sequences (max_seq_length: {seq})", approach, {**hp, "max_seq_length": seq}))
    if int(hp.get("batch_size", 4)) > 1:
        tried.append(
            (
                "batch_size: 1 (raise gradient_accumulation to keep the effective batch)",
                approach,
                {**hp, "batch_size": 1},
            )
        )
    changes = []
    seen_seq = False
    for label, approach_, hp_ in tried:
        if label.startswith("shorter") and seen_seq:
            continue
        where = smallest(approach_, hp_)
        if where:
            changes.append(f"{label}: fits {where}")
            seen_seq = seen_seq or label.startswith("shorter")
    if sharded:
        changes.append(
            f"more GPUs with sharded training (gpus: {sharded['gpu_count']}, sharding: fsdp): fits "
            f"{sharded['gpu_count']} × {sharded['gpu']} ({sharded['per_gpu_gib']} GiB per GPU)"
        )
    else:
        changes.append(
            f"more GPUs: even {SHARD_COUNTS[-1]} GPUs with sharded training (FSDP2) do not hold it"
        )
    return changes


# GPU counts a sharded plan considers (one host).
SHARD_COUNTS = (2, 4, 8)


def sharded_breakdown(
    shape: ModelShape, approach: str, hp: dict[str, Any], gpus: int, *, task_type: str = "chat"
) -> dict[str, float]:
    """Per-GPU memory with FSDP2 over ``gpus`` GPUs (experiments/training/sharding.py): weights and
    trainable state are split ``gpus`` ways; activations, logits and the CUDA context are per GPU;
    plus one decoder layer's weights gathered whole (the all-gather buffer, twice: the next layer is
    prefetched)."""
    parts = memory_breakdown(shape, approach, hp, task_type=task_type)
    per_layer = shape.linear_params / max(shape.num_layers, 1)
    width = 4.0 if approach == "full" and full_recipe(approach, hp) == "fp32_master" else 2.0
    return {
        **parts,
        "weights": parts["weights"] / gpus,
        "trainable_state": parts["trainable_state"] / gpus,
        "gathered_layers": 2 * per_layer * width,
    }


def plan_sharded(
    shape: ModelShape,
    approach: str,
    hp: dict[str, Any],
    *,
    gpus: list[tuple[str, float, float, float]],
    task_type: str = "chat",
) -> dict[str, Any] | None:
    """The fewest GPUs (2, 4, 8 of one kind; the smallest kind for that count) that hold the job with
    FSDP2, in the engine's preferred recipe order; None when even 8 of the largest do not."""
    for count in SHARD_COUNTS:
        for recipe, variant in configurations(approach, hp):
            total = sum(sharded_breakdown(shape, approach, variant, count, task_type=task_type).values())
            for name, gib, _, _ in sorted(gpus, key=lambda g: (g[1], g[3])):
                if recipe.startswith("bf16") and name in NO_BF16_GPUS:
                    continue
                if _fits(total, gib):
                    return {
                        "gpu": name,
                        "gpu_count": count,
                        "sharding": "fsdp",
                        "recipe": recipe,
                        "gradient_checkpointing": bool(variant.get("gradient_checkpointing")),
                        "per_gpu_gib": round(total / 2**30, 1),
                        "per_gpu_mib": math.ceil(total / 2**20),
                    }
    return None


# Model size classes for measured throughput (total parameters, upper bounds exclusive): workers report
# their tokens/s per class, and an estimate uses a measurement of the class its model falls in. The
# bounds separate the common families (0.5B; 1B; 3B; 7-8B; 13-34B; 70B and up), whose speeds differ
# several-fold, while keeping models of one family in one class.
SIZE_CLASSES: tuple[tuple[str, float], ...] = (
    ("<0.1B", 0.1e9),
    ("<1.5B", 1.5e9),
    ("<4B", 4e9),
    ("<10B", 10e9),
    ("<40B", 40e9),
    ("≥40B", math.inf),
)


def size_class(total_params: int) -> str:
    """The SIZE_CLASSES label of a model with ``total_params`` parameters."""
    return next(label for label, bound in SIZE_CLASSES if total_params < bound)


def measured_rate(
    workers: list[dict[str, Any]], size: str, approach: str, device: str
) -> tuple[str, float, int] | None:
    """The measurement to time a job with: among ``workers``' throughput rows for this size class and
    approach on ``device`` ("cpu" or a GPU table name), the one over the most jobs (ties: the faster).
    Returns (worker name, tokens/s, jobs) or None."""
    rows = [
        (str(w.get("name") or "?"), float(row["tokens_per_sec"]), int(row.get("samples") or 0))
        for w in workers
        for row in w.get("throughput") or ()
        if row.get("size_class") == size
        and row.get("approach") == approach
        and row.get("tokens_per_sec")
        and _device_key(str(row.get("device") or ""), w) == device
    ]
    return max(rows, key=lambda r: (r[2], r[1])) if rows else None


def _device_key(device: str, worker: dict[str, Any]) -> str | None:
    """A throughput row's device as the estimate names devices: "cpu", or the GPU table's name."""
    if not device or device.lower() == "cpu":
        return "cpu"
    row = gpu_for_worker(device, worker.get("gpu_memory_total_mb"), GPUS)
    return row[0] if row else None


GPU_NAME_KEYS = {"T4": "T4-16GB", "L4": "L4-24GB", "H100": "H100-80GB", "H200": "H200-141GB"}


def gpu_for_worker(gpu_name: str, memory_mb: int | None, gpus: list[tuple[str, float, float, float]]):
    """The table's row for a worker's GPU (by name, A100 by memory), or None when it is not known."""
    upper = gpu_name.upper()
    by_name = {g[0]: g for g in gpus}
    if "A100" in upper:
        key = "A100-80GB" if (memory_mb or 0) > 50 * 1024 else "A100-40GB"
        return by_name.get(key)
    for token, key in GPU_NAME_KEYS.items():
        if token in upper:
            return by_name.get(key)
    return None


def estimate(
    *,
    shape: ModelShape | None,
    approach: str,
    hyperparameters: dict[str, Any],
    train_tokens: int,
    gpus: list[tuple[str, float, float, float]] | None = None,
    mfu: float | None = None,
    task_type: str = "chat",
    workers: list[dict[str, Any]] | None = None,
) -> dict[str, Any]:
    """The seed's ResourceEstimate (gpu_memory, training_time, estimated_cost, recommended_gpu) plus
    the plan behind it (GPU × count × recipe, or what to change when nothing known holds the job).

    Units: ``gpu_memory`` is decimal GB (10⁹ bytes, as the seed's "24GB"), ``gpu_memory_gb`` and
    ``gpu_memory_gib`` the same estimate as numbers, ``gpu_memory_mb`` / ``gpu_memory_mib`` in MiB
    (2²⁰ bytes: what workers and PyTorch report). ``workers`` (registered workers' name, gpu_name,
    gpu_count, gpu_memory_total_mb and ``throughput``: rows of size_class, approach, device,
    tokens_per_sec, samples): when given, the time is for the device a registered worker would run it
    on — the fastest registered GPU that holds the job, else the CPU when only CPU workers are
    registered — at that device's measured tokens/s for the model's size class and approach when a
    worker has measured one (``time_basis: "measured"``), else from FLOPs at an assumed MFU (GPUs;
    ``"mfu"``); a CPU with no measurement gives no time."""
    if shape is None:
        return {
            "gpu_memory": "unknown",
            "training_time": "unknown",
            "estimated_cost": "unknown",
            "recommended_gpu": "unknown",
            "basis": "the base model's shape is unknown: give a local folder with config.json",
        }
    gpus = gpus or GPUS
    plan = plan_job(shape, approach, hyperparameters, gpus=gpus, task_type=task_type)
    hp = plan.pop("hyperparameters")
    parts = plan.pop("parts")
    total_bytes = sum(parts.values())
    plan["estimate_gib"] = round(total_bytes / 2**30, 1)
    if mfu is None:
        mfu = PACKED_MFU if packs(approach, hp, task_type) else ASSUMED_MFU
    epochs = float(hyperparameters.get("epochs", 1))
    flops = training_flops(shape, approach, hp, train_tokens * epochs)
    per_token = training_flops(shape, approach, hp, 1.0)

    device = next((g for g in gpus if g[0] == plan["gpu"]), None)
    device_note = ""
    cpu_only = False
    size = size_class(shape.total_params)
    measured: tuple[str, float, int] | None = None
    if workers is not None and workers:
        gpu_workers = [w for w in workers if int(w.get("gpu_count") or 0) > 0]
        if not gpu_workers:
            cpu_only = True
        else:
            known = [
                g
                for w in gpu_workers
                if (g := gpu_for_worker(str(w.get("gpu_name") or ""), w.get("gpu_memory_total_mb"), gpus))
            ]
            holding = [g for g in known if _fits(total_bytes, g[1])]
            if holding:
                device = min(holding, key=lambda g: -g[2])  # the fastest registered GPU that holds it
                device_note = " (a registered worker's GPU)"
                measured = measured_rate(gpu_workers, size, approach, device[0])
            else:
                device_note = " (no registered worker's GPU holds this job)"
        if cpu_only:
            measured = measured_rate(workers, size, approach, "cpu")
    tokens = train_tokens * epochs
    if cpu_only and measured is None:
        training_time = "unknown: only CPU workers are registered and none has measured a "
        training_time += f"{approach} job of a {size} model yet (no GPU time applies)"
        cost, hours, rate, device_name = "unknown", None, None, "cpu"
    elif measured is not None:
        # the device's own measured speed for this size class and approach (running mean over jobs)
        _, rate_f, _ = measured
        device_name = "cpu" if cpu_only else device[0]
        hours = tokens / rate_f / 3600
        rate = round(rate_f)
        training_time = f"{fmt_hours(hours)} on {device_name}"
        price = None if cpu_only else device[3]
        cost = f"${hours * price:.2f}" if price is not None else "unknown"
    elif device is None:
        training_time, cost, hours, rate, device_name = (
            "unknown: no known GPU holds this job",
            "unknown",
            None,
            None,
            None,
        )
    else:
        device_name, _, tflops, price = device
        hours = flops / (tflops * 1e12 * mfu) / 3600
        rate = round(tflops * 1e12 * mfu / per_token)
        training_time = fmt_hours(hours) + (f" on {device_name}" if device_note else "")
        cost = f"${hours * price:.2f}"
    recipe = plan["recipe"]
    if measured:
        time_source = (
            f"measured on worker {measured[0]}: {round(measured[1])} tokens/s over {measured[2]} "
            f"job{'s' if measured[2] != 1 else ''} ({approach}, {size} models, on {device_name})"
        )
    elif rate:
        time_source = f"{int(mfu * 100)}% MFU assumed on {device_name}{device_note} (no measurement)"
    else:
        time_source = training_time
    return {
        "gpu_memory": f"{math.ceil(total_bytes / 1e9)}GB",
        "training_time": training_time,
        "estimated_cost": cost,
        "recommended_gpu": plan["gpu"] or "none",
        "gpu_memory_gb": round(total_bytes / 1e9, 1),
        "gpu_memory_gib": round(total_bytes / 2**30, 1),
        "gpu_memory_mb": math.ceil(total_bytes / 2**20),  # MiB (the name predates the units fix)
        "gpu_memory_mib": math.ceil(total_bytes / 2**20),
        "memory_breakdown_mb": {k: round(v / 2**20) for k, v in parts.items()},  # MiB
        "plan": plan,
        "training_device": device_name,
        "total_parameters": shape.total_params,
        "trainable_parameters": trainable_params(shape, approach, hp),
        "tokens_per_sec": rate,
        "training_hours": hours,
        "basis": f"{fmt_params(shape.total_params)} params from {shape.source}; {approach}"
        f"{' (' + recipe + ')' if approach == 'full' else ''}; "
        f"batch {hp.get('batch_size')} × {hp.get('max_seq_length')} tokens; "
        f"{train_tokens} train tokens × {epochs:g} epochs; " + time_source,
        "time_basis": "measured" if measured else ("mfu" if rate else None),
        "time_source": time_source,
        "size_class": size,
    }
