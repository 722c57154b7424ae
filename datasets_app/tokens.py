"""Token counts with the tokenizer of a chosen base model (default: the project's tiny model)."""

from __future__ import annotations

import functools
import json
from pathlib import Path

import numpy as np

from t4dm_site.errors import InvalidInput

TINY_MODEL_NAME = "t4dm-tiny"
DEFAULT_MAX_LENGTH = 2048


def resolve_base_model(base_model: str | None) -> str:
    """The tiny model by default, a built-in, a hub id or a folder under the model roots: the model
    resolver (experiments.model_refs) decides; anything else is its one 404 `model_not_found`."""
    from experiments.model_refs import tokenizer_source

    return tokenizer_source(base_model)


@functools.lru_cache(maxsize=4)
def _load(location: str):
    from transformers import AutoTokenizer

    try:
        return AutoTokenizer.from_pretrained(location)
    except Exception as exc:  # transformers raises OSError/ValueError/HF errors for missing models
        raise InvalidInput(
            f"the tokenizer of {location!r} cannot be loaded ({type(exc).__name__}: {str(exc)[:200]}); "
            "use a local model folder, a hub id already in the local cache, or the default t4dm-tiny",
            code="tokenizer_unavailable",
        ) from None


def load_tokenizer(base_model: str | None = None):
    return _load(resolve_base_model(base_model))


def model_max_length(base_model: str | None = None) -> int:
    """The model's context length: max_position_embeddings from its config, else the tokenizer's."""
    location = Path(resolve_base_model(base_model))
    config = location / "config.json"
    if config.is_file():
        value = json.loads(config.read_text()).get("max_position_embeddings")
        if isinstance(value, int) and value > 0:
            return value
    length = getattr(load_tokenizer(base_model), "model_max_length", None)
    return length if isinstance(length, int) and 0 < length < 10**7 else DEFAULT_MAX_LENGTH


def count_tokens(tokenizer, texts: list[str]) -> np.ndarray:
    """Token counts of many texts, batched through the fast (Rust) tokenizer."""
    if not texts:
        return np.zeros(0, dtype=np.int32)
    backend = getattr(tokenizer, "backend_tokenizer", None) or getattr(tokenizer, "_tokenizer", None)
    counts = np.zeros(len(texts), dtype=np.int32)
    # An Encoding keeps ids, offsets, masks and token strings (~100 bytes a token): encode a slice of
    # about COUNT_CHUNK_CHARS of text at a time, never the whole batch at once.
    for start, stop in _chunks(texts):
        part = texts[start:stop]
        if backend is not None:
            encodings = (
                backend.encode_batch_fast(part, add_special_tokens=False)
                if hasattr(backend, "encode_batch_fast")
                else backend.encode_batch(part, add_special_tokens=False)
            )
            counts[start:stop] = [len(e) for e in encodings]
        else:
            counts[start:stop] = [len(x) for x in tokenizer(part, add_special_tokens=False)["input_ids"]]
        del part
    return counts


COUNT_CHUNK_CHARS = 256 * 1024


def _chunks(texts: list[str]):
    start = size = 0
    for i, text in enumerate(texts):
        size += len(text)
        if size >= COUNT_CHUNK_CHARS:
            yield start, i + 1
            start, size = i + 1, 0
    if start < len(texts):
        yield start, len(texts)


def describe(counts: np.ndarray) -> dict[str, float | int]:
    if counts.size == 0:
        return {"mean": 0, "p50": 0, "p95": 0, "max": 0}
    return {
        "mean": round(float(counts.mean()), 2),
        "p50": int(np.percentile(counts, 50)),
        "p95": int(np.percentile(counts, 95)),
        "max": int(counts.max()),
    }


def histogram(counts: np.ndarray, bins: int = 30) -> dict[str, list]:
    if counts.size == 0:
        return {"edges": [], "counts": []}
    hist, edges = np.histogram(counts, bins=min(bins, max(1, int(counts.max()) - int(counts.min()) + 1)))
    return {"edges": [round(float(e), 2) for e in edges], "counts": [int(c) for c in hist]}
