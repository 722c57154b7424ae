"""Turn a training exception into the one-line message a researcher sees on the job page.

Out-of-memory (CUDA, or the CPU allocator / MemoryError) says what to change in the config instead of
showing a stack trace; a checkpoint that could not be written says where and why. Anything else keeps
its type and message (the full traceback goes to the worker's log). No Django here.
"""

from __future__ import annotations

import re
from typing import Any

from experiments.training.checkpoints import CheckpointWriteError

# CUDA: "CUDA out of memory. Tried to allocate 2.00 GiB ..."; CPU: "DefaultCPUAllocator: not enough
# memory: you tried to allocate 123 bytes" / "DefaultCPUAllocator: can't allocate memory: ...".
_OOM_PATTERNS = re.compile(
    r"out of memory|DefaultCPUAllocator: (not enough memory|can't allocate memory)|"
    r"Cannot allocate memory|MPS backend out of memory",
    re.IGNORECASE,
)
_ALLOC_SIZE = re.compile(r"(?:tried to allocate|Tried to allocate)\s+([\d.]+\s*[KMGT]?i?B|\d+ bytes)")


def _chain(exc: BaseException):
    seen = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        yield exc
        exc = exc.__cause__ or exc.__context__


def is_out_of_memory(exc: BaseException) -> bool:
    for link in _chain(exc):
        if isinstance(link, MemoryError) or type(link).__name__ == "OutOfMemoryError":
            return True
        if isinstance(link, RuntimeError) and _OOM_PATTERNS.search(str(link)):
            return True
    return False


def _size(exc: BaseException) -> str:
    for link in _chain(exc):
        match = _ALLOC_SIZE.search(str(link))
        if match:
            raw = match.group(1)
            if raw.endswith(" bytes"):
                return f"{int(raw.split()[0]) / 2**30:.1f} GiB"
            return raw
    return ""


def out_of_memory_message(exc: BaseException, *, hyperparameters: dict[str, Any] | None = None) -> str:
    hp = hyperparameters or {}
    gpu = type(exc).__name__ == "OutOfMemoryError" or "CUDA" in str(exc)
    where = "GPU" if gpu else "CPU"
    size = _size(exc)
    batch = hp.get("batch_size")
    accumulation = hp.get("gradient_accumulation") or 1
    seq = hp.get("max_seq_length")
    tips = [
        f"a smaller batch_size (now {batch}; raise gradient_accumulation, now {accumulation}, "
        "to keep the effective batch)"
        if batch
        else "a smaller batch_size (raise gradient_accumulation to keep the effective batch)",
        "gradient_checkpointing: true" if not hp.get("gradient_checkpointing") else None,
        "approach qlora (4-bit base weights, on a GPU)",
        f"a shorter max_seq_length (now {seq})" if seq else "a shorter max_seq_length",
    ]
    return (
        f"out of memory on the {where}"
        + (f" (tried to allocate {size})" if size else "")
        + ": the batch does not fit. Change the config: "
        + "; or ".join(t for t in tips if t)
        + "."
    )


def describe_failure(exc: BaseException, *, hyperparameters: dict[str, Any] | None = None) -> str:
    """The job's error message for `exc`."""
    if is_out_of_memory(exc):
        return out_of_memory_message(exc, hyperparameters=hyperparameters)
    for link in _chain(exc):
        if isinstance(link, CheckpointWriteError):
            return str(link)
    return f"{type(exc).__name__}: {exc}"
