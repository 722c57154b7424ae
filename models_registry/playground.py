"""Playground generation: chat with a trained folder (adapter or full model) or a base model, one
token at a time. Plain transformers; the websocket consumer drives it from a thread."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

LIMITS = {"max_new_tokens": (1, 512), "temperature": (0.0, 5.0), "top_p": (0.0, 1.0), "top_k": (0, 1000),
          "repetition_penalty": (0.5, 3.0)}  # fmt: skip
DEFAULTS = {
    "max_new_tokens": 64,
    "temperature": 0.0,
    "top_p": 1.0,
    "top_k": 50,
    "repetition_penalty": 1.0,
    "seed": 0,
}


def generation_params(raw: dict[str, Any] | None) -> dict[str, Any]:
    """Clamp what the page sends to safe ranges; temperature 0 means greedy decoding."""
    params = {**DEFAULTS}
    for name, value in (raw or {}).items():
        if name not in DEFAULTS:
            raise ValueError(f"unknown generation parameter {name!r}; use {', '.join(DEFAULTS)}")
        if not isinstance(value, int | float) or isinstance(value, bool):
            raise ValueError(f"{name} must be a number")
        if name in LIMITS:
            low, high = LIMITS[name]
            if not low <= value <= high:
                raise ValueError(f"{name} must be between {low} and {high}")
        params[name] = value
    for name in ("max_new_tokens", "top_k", "seed"):
        params[name] = int(params[name])
    return params


_LOCK = threading.Lock()


@lru_cache(maxsize=4)
def _load(path: str, adapter: bool):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    if adapter:
        from peft import AutoPeftModelForCausalLM

        model = AutoPeftModelForCausalLM.from_pretrained(path)
    else:
        model = AutoModelForCausalLM.from_pretrained(path)
    tokenizer = AutoTokenizer.from_pretrained(path)
    return model.eval(), tokenizer


def load(path: str):
    from models_registry.export import is_adapter

    with _LOCK:  # one load per folder even when both sides ask at once
        return _load(path, is_adapter(path))


def prompt_ids(tokenizer, messages: list[dict[str, str]]):
    if getattr(tokenizer, "chat_template", None):
        ids = tokenizer.apply_chat_template(
            messages, add_generation_prompt=True, return_tensors="pt", return_dict=True
        )
        return ids["input_ids"]
    text = "\n".join(f"{m['role']}: {m['content']}" for m in messages) + "\nassistant:"
    return tokenizer(text, return_tensors="pt")["input_ids"]


@dataclass
class Generated:
    text: str
    tokens: int
    seconds: float


class _Streamer:
    """transformers' streamer protocol: put() gets the prompt once, then each new token."""

    def __init__(self, tokenizer, on_text: Callable[[str], None]) -> None:
        self.tokenizer, self.on_text = tokenizer, on_text
        self.ids: list[int] = []
        self.sent = ""
        self.prompt_seen = False

    def put(self, value) -> None:
        if not self.prompt_seen:
            self.prompt_seen = True
            return
        self.ids.extend(value.reshape(-1).tolist())
        text = self.tokenizer.decode(self.ids, skip_special_tokens=True)
        # Send only complete characters: a byte-level token can end inside a UTF-8 sequence.
        if text.startswith(self.sent) and not text.endswith("\ufffd"):
            delta, self.sent = text[len(self.sent) :], text
            if delta:
                self.on_text(delta)

    def end(self) -> None:
        pass


def generate(
    *, path: str, messages: list[dict[str, str]], params: dict[str, Any], on_text: Callable[[str], None]
) -> Generated:
    import torch

    model, tokenizer = load(path)
    input_ids = prompt_ids(tokenizer, messages)
    greedy = params["temperature"] == 0
    kwargs: dict[str, Any] = {"max_new_tokens": params["max_new_tokens"], "do_sample": not greedy,
                              "repetition_penalty": params["repetition_penalty"]}  # fmt: skip
    if not greedy:
        kwargs.update(temperature=params["temperature"], top_p=params["top_p"], top_k=params["top_k"])
        torch.manual_seed(params["seed"])
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    streamer = _Streamer(tokenizer, on_text)
    started = time.perf_counter()
    with torch.no_grad():
        output = model.generate(
            input_ids=input_ids,
            attention_mask=torch.ones_like(input_ids),
            pad_token_id=pad,
            streamer=streamer,
            **kwargs,
        )
    new = output[0, input_ids.shape[1] :]
    return Generated(
        text=tokenizer.decode(new, skip_special_tokens=True),
        tokens=int(new.shape[0]),
        seconds=time.perf_counter() - started,
    )
