"""augment_dataset's methods. New rows are made from train rows only and carry provenance.

Model-free: `template_paraphrase` (rephrases the request with seeded templates) and `noise` (case and
whitespace perturbation, for robustness). Model-based: `paraphrase` (a text2text-generation pipeline)
and `backtranslate` (two translation pipelines, there and back) on models the user names, as local
folders or hub ids; without one, the request is refused with a message saying what to configure.
"""

from __future__ import annotations

import json
import random
from collections.abc import Callable

from django.conf import settings

from t4dm_site.errors import InvalidInput

MODEL_FREE = ("template_paraphrase", "noise")
MODEL_BASED = ("paraphrase", "backtranslate")
METHODS = MODEL_FREE + MODEL_BASED

TEMPLATES = (
    "{text}",
    "Please answer this: {text}",
    "Could you help me with the following? {text}",
    "I have a question. {text}",
    "{text} Please be precise.",
    "Quick question: {text}",
    "Here is what I need to know: {text}",
)


def _configured(options: dict, key: str, setting: str):
    return options.get(key) or getattr(settings, setting, None)


def check_methods(methods: list[str], options: dict, *, task_type: str) -> None:
    if not methods:
        raise InvalidInput(f"choose at least one method: {', '.join(METHODS)}", code="invalid_methods")
    unknown = [m for m in methods if m not in METHODS]
    if unknown:
        raise InvalidInput(
            f"unknown augmentation methods {unknown}; choose from {', '.join(METHODS)}",
            code="invalid_methods",
        )
    if "paraphrase" in methods and not _configured(options, "paraphrase_model", "DATASET_PARAPHRASE_MODEL"):
        raise InvalidInput(
            "paraphrase needs a text2text-generation model: pass options.paraphrase_model (a local folder or a hub id "
            "such as a T5 paraphraser) or set DATASET_PARAPHRASE_MODEL; or use the model-free template_paraphrase",
            code="model_not_configured",
        )
    if "backtranslate" in methods:
        models = _configured(options, "backtranslate_models", "DATASET_BACKTRANSLATE_MODELS")
        if not models or len(models) != 2:
            raise InvalidInput(
                "backtranslate needs two translation models, there and back (e.g. en→de and de→en): pass "
                "options.backtranslate_models as [forward, backward] (local folders or hub ids) or set "
                "DATASET_BACKTRANSLATE_MODELS; or use a model-free method (template_paraphrase, noise)",
                code="model_not_configured",
            )
    factor = options.get("copies_per_row", 1)
    if not isinstance(factor, int) or not 1 <= factor <= 10:
        raise InvalidInput("options.copies_per_row must be an integer from 1 to 10", code="invalid_options")


def _request_text(row: dict, task_type: str) -> str:
    if task_type == "chat":
        return next(m["content"] for m in reversed(row["messages"]) if m["role"] == "user")
    if task_type == "instruction":
        return row["instruction"]
    if task_type == "completion":
        return row.get("prompt") or row.get("text") or ""
    return row["text"]


def _with_request(row: dict, task_type: str, text: str) -> dict:
    if task_type == "chat":
        messages = [dict(m) for m in row["messages"]]
        last_user = max(i for i, m in enumerate(messages) if m["role"] == "user")
        messages[last_user]["content"] = text
        return {"messages": messages}
    key = {"instruction": "instruction", "classification": "text"}.get(task_type)
    if key is None:
        key = "prompt" if row.get("prompt") is not None else "text"
    return {**row, key: text}


def _noise(text: str, rng: random.Random) -> str:
    choice = rng.randrange(3)
    if choice == 0:
        return text.lower()
    if choice == 1:
        return text[:1].upper() + text[1:] if text[:1].islower() else text[:1].lower() + text[1:]
    words = text.split(" ")
    if len(words) > 2:
        i = rng.randrange(1, len(words))
        words[i] = " " + words[i]
    return " ".join(words).rstrip(".?!") if rng.random() < 0.5 else " ".join(words)


def _pipeline_texts(texts: list[str], method: str, options: dict) -> list[str]:
    from transformers import pipeline

    try:
        if method == "paraphrase":
            model = _configured(options, "paraphrase_model", "DATASET_PARAPHRASE_MODEL")
            generate = pipeline("text2text-generation", model=model)
            return [
                out["generated_text"]
                for out in generate([f"paraphrase: {t}" for t in texts], max_new_tokens=128)
            ]
        forward, backward = _configured(options, "backtranslate_models", "DATASET_BACKTRANSLATE_MODELS")
        there = pipeline("translation", model=forward)
        back = pipeline("translation", model=backward)
        middle = [out["translation_text"] for out in there(texts, max_length=256)]
        return [out["translation_text"] for out in back(middle, max_length=256)]
    except (OSError, ValueError) as exc:
        raise InvalidInput(
            f"{method}: the model cannot be loaded or run ({str(exc)[:300]})", code="model_unavailable"
        ) from None


def augment_rows(
    rows: list[dict],
    *,
    task_type: str,
    methods: list[str],
    options: dict,
    progress: Callable[[float, str], None] | None = None,
    existing: list[dict] | None = None,
) -> tuple[list[dict], list[str], dict]:
    """(new rows, their provenance as JSON strings, report). A produced row that duplicates a row
    already there (`rows` and `existing`) or one produced before, compared as Clean compares (case,
    whitespace and Unicode form ignored), is skipped and counted in the report's `duplicates_skipped`."""
    from datasets_app.pipeline import normalise_text
    from datasets_app.rows import io_text

    def key(row: dict) -> str:
        prompt, output = io_text(row, task_type)
        return normalise_text(prompt) + "\x1f" + normalise_text(output)

    seen = {key(row) for row in [*rows, *(existing or [])]}
    skipped: dict[str, int] = {}
    check_methods(methods, options, task_type=task_type)
    rng = random.Random(options.get("seed", 0))
    copies = options.get("copies_per_row", 1)
    new_rows: list[dict] = []
    provenance: list[str] = []
    counts: dict[str, int] = {}
    examples: dict[str, list[dict]] = {}
    for m, method in enumerate(methods):
        originals = [_request_text(row, task_type) for row in rows]
        for copy in range(copies):
            if method in MODEL_BASED:
                produced = _pipeline_texts(originals, method, options)
            elif method == "template_paraphrase":
                produced = [rng.choice(TEMPLATES[1:]).format(text=t) for t in originals]
            else:
                produced = [_noise(t, rng) for t in originals]
            for i, (row, before, after) in enumerate(zip(rows, originals, produced, strict=True)):
                if not after.strip() or after == before:
                    continue
                produced_row = _with_request(row, task_type, after)
                if key(produced_row) in seen:
                    skipped[method] = skipped.get(method, 0) + 1
                    continue
                seen.add(key(produced_row))
                new_rows.append(produced_row)
                record = {"method": method, "source_split": "train", "source_row": i + 1, "copy": copy + 1}
                if method == "paraphrase":
                    record["model"] = str(
                        _configured(options, "paraphrase_model", "DATASET_PARAPHRASE_MODEL")
                    )
                elif method == "backtranslate":
                    record["model"] = list(
                        _configured(options, "backtranslate_models", "DATASET_BACKTRANSLATE_MODELS")
                    )
                provenance.append(json.dumps(record))
                counts[method] = counts.get(method, 0) + 1
                if len(examples.setdefault(method, [])) < 5:
                    examples[method].append({"source_row": i + 1, "before": before, "after": after})
            if progress:
                progress(
                    (m * copies + copy + 1) / (len(methods) * copies),
                    f"{method}: copy {copy + 1} of {copies}",
                )
    return (
        new_rows,
        provenance,
        {
            "methods": methods,
            "added_rows": counts,
            "duplicates_skipped": skipped,
            "examples": examples,
            "options": options,
        },
    )
