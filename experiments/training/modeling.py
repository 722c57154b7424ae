"""Loading a base model for one approach (full, LoRA, QLoRA, prompt tuning) and task type, and reading
a model's shape from its config without loading weights. No Django here."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Any

import torch
from peft import (
    LoraConfig,
    PromptTuningConfig,
    PromptTuningInit,
    TaskType,
    get_peft_model,
    prepare_model_for_kbit_training,
)
from transformers import (
    AutoConfig,
    AutoModelForCausalLM,
    AutoModelForSequenceClassification,
    BitsAndBytesConfig,
)

APPROACHES = ("lora", "full", "qlora", "prompt_tuning")
ADAPTER_APPROACHES = ("lora", "qlora")


def bitsandbytes_available() -> bool:
    return importlib.util.find_spec("bitsandbytes") is not None


def _auto_class(task_type: str):
    return AutoModelForSequenceClassification if task_type == "classification" else AutoModelForCausalLM


def meta_model(model_base: str, task_type: str, *, num_labels: int = 2) -> torch.nn.Module:
    """The model's modules and parameter shapes from its config alone (no weights, no memory)."""
    config = AutoConfig.from_pretrained(model_base)
    if task_type == "classification":
        config.num_labels = num_labels
    with torch.device("meta"):
        return _auto_class(task_type).from_config(config)


def linear_module_names(model: torch.nn.Module) -> list[str]:
    """Short names of the Linear layers (what LoRA's target_modules match), e.g. q_proj, query."""
    return sorted(
        {
            name.rsplit(".", 1)[-1]
            for name, module in model.named_modules()
            if isinstance(module, torch.nn.Linear)
        }
    )


def check_target_modules(model: torch.nn.Module, target_modules: list[str]) -> None:
    names = linear_module_names(model)
    missing = [m for m in target_modules if m not in names]
    if missing:
        raise ValueError(
            f"hyperparameters.target_modules: {', '.join(missing)} not in model; choose from {', '.join(names)}"
        )


def is_local_model(model_base: str) -> bool:
    return (Path(model_base) / "config.json").is_file()


def load_model(
    *,
    model_base: str,
    approach: str,
    task_type: str,
    hp: dict[str, Any],
    on_gpu: bool,
    use_bf16: bool,
    labels: list[str] | None = None,
    random_init: bool = False,
    attn_implementation: str | None = None,
) -> torch.nn.Module:
    """Load the base for ``approach`` and wrap it with peft where the approach calls for it."""
    kwargs: dict[str, Any] = {}
    if task_type == "classification":
        labels = labels or []
        kwargs.update(
            num_labels=len(labels),
            id2label=dict(enumerate(labels)),
            label2id={label: i for i, label in enumerate(labels)},
        )
    compute_dtype = torch.bfloat16 if use_bf16 else torch.float32
    if attn_implementation and task_type != "classification":
        kwargs["attn_implementation"] = attn_implementation
    if approach == "qlora":
        if not bitsandbytes_available():
            raise ValueError(
                "approach: qlora needs the bitsandbytes package on the worker (pip install bitsandbytes)"
            )
        kwargs["quantization_config"] = BitsAndBytesConfig(
            load_in_4bit=True,
            bnb_4bit_quant_type="nf4",
            bnb_4bit_use_double_quant=True,
            bnb_4bit_compute_dtype=compute_dtype,
        )
        kwargs["dtype"] = compute_dtype
        if on_gpu:
            kwargs["device_map"] = {"": torch.cuda.current_device()}
    else:
        # A frozen base can live in bf16; full fine-tuning keeps fp32 master weights under bf16 autocast.
        kwargs["dtype"] = compute_dtype if approach != "full" else torch.float32
    if random_init:
        # Throughput/memory runs at real size without a download: the config's shapes, random weights.
        if approach == "qlora":
            raise ValueError("random_init: not supported with qlora (quantization needs saved weights)")
        config = AutoConfig.from_pretrained(model_base)
        for key in ("num_labels", "id2label", "label2id"):
            if key in kwargs:
                setattr(config, key, kwargs.pop(key))
        with torch.device("cuda" if on_gpu else "cpu"):
            model = _auto_class(task_type).from_config(
                config, dtype=kwargs["dtype"], attn_implementation=kwargs.get("attn_implementation")
            )
    else:
        model = _auto_class(task_type).from_pretrained(model_base, **kwargs)
    if task_type == "classification" and model.config.pad_token_id is None:
        model.config.pad_token_id = model.config.eos_token_id

    peft_task = TaskType.SEQ_CLS if task_type == "classification" else TaskType.CAUSAL_LM
    if approach in ADAPTER_APPROACHES:
        check_target_modules(model, list(hp["target_modules"]))
        if approach == "qlora":
            model = prepare_model_for_kbit_training(
                model, use_gradient_checkpointing=bool(hp.get("gradient_checkpointing"))
            )
        config = LoraConfig(
            task_type=peft_task,
            r=hp["lora_r"],
            lora_alpha=hp["lora_alpha"],
            lora_dropout=hp["lora_dropout"],
            target_modules=list(hp["target_modules"]),
        )
        model = get_peft_model(model, config)
    elif approach == "prompt_tuning":
        config = PromptTuningConfig(
            task_type=peft_task,
            num_virtual_tokens=hp["num_virtual_tokens"],
            prompt_tuning_init=PromptTuningInit.RANDOM,
        )
        model = get_peft_model(model, config)
    if hp.get("gradient_checkpointing") and approach != "qlora":
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
        if approach in ADAPTER_APPROACHES:
            model.enable_input_require_grads()
    return model
