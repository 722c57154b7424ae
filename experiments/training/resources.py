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
Time: training FLOPs (6·N per token for full, 4·N for frozen bases that skip weight gradients, plus
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
    "meta-llama/llama-3.2-1b": "llama-3.2-1b",
    "meta-llama/llama-3.2-3b": "llama-3.2-3b",
    "mistralai/mistral-7b-v0.1": "mistral-7b",
    "qwen/qwen2.5-7b": "qwen2.5-7b",
    "qwen/qwen2.5-0.5b": "qwen2.5-0.5b",
}

# name, memory GiB, peak dense bf16 TFLOP/s, USD per hour (typical on-demand cloud price, 2026)
GPUS: list[tuple[str, int, float, float]] = [
    ("T4-16GB", 16, 65, 0.35),
    ("L4-24GB", 24, 121, 0.80),
    ("A100-40GB", 40, 312, 1.60),
    ("A100-80GB", 80, 312, 2.00),
    ("H100-80GB", 80, 989, 3.00),
    ("H200-141GB", 141, 989, 3.80),
]
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


PACKABLE_APPROACHES = ("full", "lora", "qlora")


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
    """Padding-free batches apply to generative tasks trained with full, LoRA or QLoRA."""
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
    if approach == "full":
        weights = shape.total_params * 4.0
    elif approach == "qlora":
        weights = shape.linear_params * NF4_BYTES_PER_PARAM + (shape.total_params - shape.linear_params) * act
    else:
        weights = shape.total_params * float(act)
    trainable = trainable_params(shape, approach, hp)
    # the full model's weights are already counted above; its fp32 grad + AdamW moments are 12 bytes more
    state = trainable * (12.0 if approach == "full" else 16.0)

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
    plus fp32 everything else (peft's prepare_model_for_kbit_training) and a bf16 copy of the head."""
    h, inter, layers = shape.hidden_size, shape.intermediate_size, shape.num_layers
    head = shape.vocab_size * h
    tokens = micro_batch_tokens(hp)
    trainable = trainable_params(shape, approach, hp)
    if approach == "full":
        weights = shape.total_params * 4.0 + (shape.linear_params + head) * 2.0
        state = shape.total_params * 12.0
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
    activations = tokens * layers * (elements * 2 + byte_tensors)
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


def fmt_hours(hours: float) -> str:
    if hours < 1 / 60:
        seconds = max(1, round(hours * 3600))
        return f"{seconds} second{'s' if seconds != 1 else ''}"
    if hours < 1:
        return f"{round(hours * 60)} minutes"
    return f"{hours:.1f} hours".replace(".0 hours", " hours")


def estimate(
    *,
    shape: ModelShape | None,
    approach: str,
    hyperparameters: dict[str, Any],
    train_tokens: int,
    gpus: list[tuple[str, int, float, float]] | None = None,
    mfu: float | None = None,
    task_type: str = "chat",
) -> dict[str, Any]:
    """The seed's ResourceEstimate (gpu_memory, training_time, estimated_cost, recommended_gpu) plus
    the numbers behind it."""
    if shape is None:
        return {
            "gpu_memory": "unknown",
            "training_time": "unknown",
            "estimated_cost": "unknown",
            "recommended_gpu": "unknown",
            "basis": "the base model's shape is unknown: give a local folder with config.json",
        }
    gpus = gpus or GPUS
    if mfu is None:
        mfu = PACKED_MFU if packs(approach, hyperparameters, task_type) else ASSUMED_MFU
    parts = memory_breakdown(shape, approach, hyperparameters, task_type=task_type)
    total_bytes = sum(parts.values())
    total_gib = total_bytes / 2**30
    epochs = float(hyperparameters.get("epochs", 1))
    fitting = [g for g in gpus if g[1] >= total_gib] or [max(gpus, key=lambda g: g[1])]
    name, _, tflops, price = fitting[0]
    flops = training_flops(shape, approach, hyperparameters, train_tokens * epochs)
    hours = flops / (tflops * 1e12 * mfu) / 3600
    return {
        "gpu_memory": f"{math.ceil(total_gib)}GB",
        "training_time": fmt_hours(hours),
        "estimated_cost": f"${hours * price:.2f}",
        "recommended_gpu": name,
        "gpu_memory_mb": math.ceil(total_bytes / 2**20),
        "memory_breakdown_mb": {k: round(v / 2**20) for k, v in parts.items()},
        "total_parameters": shape.total_params,
        "trainable_parameters": trainable_params(shape, approach, hyperparameters),
        "tokens_per_sec": round(tflops * 1e12 * mfu / training_flops(shape, approach, hyperparameters, 1.0)),
        "training_hours": hours,
        "basis": f"{shape.total_params / 1e9:.3g}B params from {shape.source}; {approach}; "
        f"batch {hyperparameters.get('batch_size')} × {hyperparameters.get('max_seq_length')} tokens; "
        f"{train_tokens} train tokens × {epochs:g} epochs; {int(mfu * 100)}% MFU on {name}",
    }
