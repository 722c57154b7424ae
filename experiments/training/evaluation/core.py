"""Evaluate a model (a peft adapter, a full model folder or a hub id) on a test split.

``evaluate_model`` is the seed's evaluate_model: the model's metrics, the base model's metrics on the
same rows (``comparison_to_base``, signed deltas like ``"+0.15"``), sample outputs and a per-example
record for the browser. No Django here: the platform calls it from a Celery task.

What "the base" is: for an adapter, the model with its adapter disabled (peft ``disable_adapter``),
which for classification means the base encoder with the freshly initialised head that training
started from (seeded, so repeatable; near chance by construction). For a full model, ``base_model``.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from peft import PeftConfig, PeftModel
from transformers import AutoModelForCausalLM, AutoModelForSequenceClassification, AutoTokenizer

from experiments.training.data import (
    IGNORE_INDEX,
    INSTRUCTION_PROMPT,
    classification_labels,
    load_split,
    tokenize_row,
)
from experiments.training.evaluation.metrics import (
    CLASSIFICATION_TASKS,
    LOWER_IS_BETTER,
    MetricSpec,
    compute,
    resolve_metrics,
)
from experiments.training.evaluation.paths import check_model_path, is_adapter

Progress = Callable[[float, str], None]
DEFAULT_SAMPLE_OUTPUTS = 5


def _no_progress(fraction: float, message: str) -> None:
    return None


@dataclass
class LoadedModel:
    model: torch.nn.Module
    tokenizer: Any
    path: str
    is_adapter: bool
    base_model: str | None
    labels: list[str] | None = None

    @contextmanager
    def as_base(self) -> Iterator[LoadedModel]:
        """This model with its adapter switched off (only for adapters)."""
        if not self.is_adapter:
            raise ValueError("as_base: only an adapter can be switched off; load the base model instead")
        with self.model.disable_adapter():
            yield LoadedModel(self.model, self.tokenizer, self.base_model or "", False, None, self.labels)


@dataclass
class ScoreResult:
    """One model's scores on a set of rows, plus what paired statistics need."""

    metrics: dict[str, float]
    details: dict[str, Any]
    examples: list[dict[str, Any]]
    raw: dict[str, Any] = field(default_factory=dict)


def device_for(device: str = "auto") -> torch.device:
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


def load_model_for_eval(
    model_path: str,
    task_type: str,
    *,
    base_model: str | None = None,
    labels: list[str] | None = None,
    device: str = "auto",
    seed: int = 0,
) -> LoadedModel:
    """Load an adapter (on its base, or on ``base_model`` where the base moved) or a full model."""
    check_model_path(model_path)
    adapter = is_adapter(model_path)
    if adapter:
        base_model = base_model or PeftConfig.from_pretrained(model_path).base_model_name_or_path
    classification = task_type in CLASSIFICATION_TASKS
    auto = AutoModelForSequenceClassification if classification else AutoModelForCausalLM
    kwargs: dict[str, Any] = {}
    if classification:
        if not labels:
            raise ValueError("labels: a classification evaluation needs the training label names")
        kwargs = {
            "num_labels": len(labels),
            "id2label": dict(enumerate(labels)),
            "label2id": {label: i for i, label in enumerate(labels)},
        }
    # The seed makes a freshly initialised head (an adapter's "base") the same on every run.
    torch.manual_seed(seed)
    if adapter:
        model = auto.from_pretrained(base_model, **kwargs)
        model = PeftModel.from_pretrained(model, model_path)
    else:
        model = auto.from_pretrained(model_path, **kwargs)
    model.to(device_for(device)).eval()
    tokenizer_source = model_path if (Path(model_path) / "tokenizer_config.json").is_file() else base_model
    tokenizer = AutoTokenizer.from_pretrained(tokenizer_source or model_path)
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    if classification and model.config.pad_token_id is None:
        model.config.pad_token_id = tokenizer.pad_token_id
    return LoadedModel(model, tokenizer, model_path, adapter, base_model, labels)


# --- classification ---------------------------------------------------------------------------------


@torch.no_grad()
def predict_labels(lm: LoadedModel, texts: list[str], *, batch_size: int = 32, max_length: int = 512):
    """(predicted label, probability of it) per text."""
    labels = lm.labels or []
    device = next(lm.model.parameters()).device
    out = []
    for start in range(0, len(texts), batch_size):
        batch = lm.tokenizer(
            texts[start : start + batch_size],
            padding=True,
            truncation=True,
            max_length=max_length,
            return_tensors="pt",
        ).to(device)
        probs = torch.softmax(lm.model(**batch).logits.float(), dim=-1)
        best = probs.max(dim=-1)
        out.extend(
            (labels[i], float(p)) for i, p in zip(best.indices.tolist(), best.values.tolist(), strict=True)
        )
    return out


def score_classification(lm: LoadedModel, rows: list[dict[str, Any]], specs: list[MetricSpec]) -> ScoreResult:
    texts = [str(r["text"]) for r in rows]
    references = [str(r["label"]) for r in rows]
    unknown = sorted(set(references) - set(lm.labels or []))
    if unknown:
        raise ValueError(f"test set: labels {unknown} are not among the model's labels {lm.labels}")
    predicted = predict_labels(lm, texts)
    result = compute(
        "classification", predictions=[p for p, _ in predicted], references=references, labels=lm.labels
    )
    wanted = {key for spec in specs for key in spec.keys}
    metrics = {key: result[key] for key in ("accuracy", "f1_score", "precision", "recall") if key in wanted}
    examples = [
        {
            "index": i,
            "prompt": text,
            "reference": ref,
            "generated": pred,
            "confidence": conf,
            "scores": {"correct": float(pred == ref)},
        }
        for i, (text, ref, (pred, conf)) in enumerate(zip(texts, references, predicted, strict=True))
    ]
    details = {"per_class": result["per_class"], "confusion_matrix": result["confusion_matrix"]}
    raw = {"predictions": [p for p, _ in predicted], "references": references, "labels": lm.labels}
    return ScoreResult(metrics, details, examples, raw)


# --- generative tasks -------------------------------------------------------------------------------


def prompt_and_reference(
    row: dict[str, Any], task_type: str, tokenizer: Any
) -> tuple[list[int], str, str] | None:
    """(prompt token ids, prompt text, reference) for generation, or None for a row with no prompt
    (a plain-text completion row: only perplexity applies to it)."""
    if task_type == "chat":
        messages = [{"role": m["role"], "content": m["content"]} for m in row["messages"]]
        last = max(i for i, m in enumerate(messages) if m["role"] == "assistant")
        text = tokenizer.apply_chat_template(messages[:last], tokenize=False, add_generation_prompt=True)
        ids = tokenizer(text, add_special_tokens=False)["input_ids"]
        return ids, text, messages[last]["content"]
    if task_type == "instruction":
        input_text = row.get("input") or ""
        input_block = f"### Input:\n{input_text}\n\n" if input_text else ""
        text = INSTRUCTION_PROMPT.format(instruction=row["instruction"], input_block=input_block)
        return tokenizer(text, add_special_tokens=True)["input_ids"], text, row["output"]
    if isinstance(row.get("prompt"), str) and isinstance(row.get("completion"), str):
        return (
            tokenizer(row["prompt"], add_special_tokens=True)["input_ids"],
            row["prompt"],
            row["completion"],
        )
    return None


@torch.no_grad()
def token_nll(
    model: torch.nn.Module,
    tokenizer: Any,
    rows: list[dict[str, Any]],
    task_type: str,
    *,
    batch_size: int = 8,
    max_seq_length: int = 1024,
) -> list[tuple[float, int]]:
    """(sum of NLL over target tokens, number of target tokens) per row.

    Target tokens are exactly the ones training learns (``data.tokenize_row``'s labels), scored with
    the usual one-token shift: token t is predicted from tokens < t. Sums are in float64.
    """
    device = next(model.parameters()).device
    encoded = [
        tokenize_row(row, tokenizer, task_type=task_type, max_seq_length=max_seq_length) for row in rows
    ]
    pad_id = tokenizer.pad_token_id
    out: list[tuple[float, int]] = []
    for start in range(0, len(encoded), batch_size):
        chunk = encoded[start : start + batch_size]
        width = max(len(e["input_ids"]) for e in chunk)
        input_ids = torch.tensor([e["input_ids"] + [pad_id] * (width - len(e["input_ids"])) for e in chunk])
        attention = torch.tensor(
            [[1] * len(e["input_ids"]) + [0] * (width - len(e["input_ids"])) for e in chunk]
        )
        labels = torch.tensor([e["labels"] + [IGNORE_INDEX] * (width - len(e["labels"])) for e in chunk])
        logits = model(input_ids=input_ids.to(device), attention_mask=attention.to(device)).logits
        shift_logits = logits[:, :-1, :].double()
        shift_labels = labels[:, 1:].to(device)
        nll = torch.nn.functional.cross_entropy(
            shift_logits.reshape(-1, shift_logits.size(-1)),
            shift_labels.reshape(-1),
            ignore_index=IGNORE_INDEX,
            reduction="none",
        ).view(shift_labels.shape)
        mask = shift_labels != IGNORE_INDEX
        out.extend((float(n.sum()), int(m.sum())) for n, m in zip(nll * mask, mask, strict=True))
    return out


@torch.no_grad()
def generate(
    model: torch.nn.Module,
    tokenizer: Any,
    prompts: list[list[int]],
    *,
    max_new_tokens: int = 48,
    batch_size: int = 8,
) -> list[str]:
    """Greedy continuations of token-id prompts (left-padded batches), decoded without special tokens."""
    device = next(model.parameters()).device
    pad_id = tokenizer.pad_token_id
    texts: list[str] = []
    for start in range(0, len(prompts), batch_size):
        chunk = prompts[start : start + batch_size]
        width = max(len(p) for p in chunk)
        input_ids = torch.tensor([[pad_id] * (width - len(p)) + p for p in chunk], device=device)
        attention = torch.tensor([[0] * (width - len(p)) + [1] * len(p) for p in chunk], device=device)
        output = model.generate(
            input_ids=input_ids,
            attention_mask=attention,
            max_new_tokens=max_new_tokens,
            do_sample=False,
            pad_token_id=pad_id,
            eos_token_id=tokenizer.eos_token_id,
        )
        for sequence in output[:, width:]:
            texts.append(tokenizer.decode(sequence, skip_special_tokens=True).strip())
    return texts


def score_generative(
    lm: LoadedModel,
    rows: list[dict[str, Any]],
    task_type: str,
    specs: list[MetricSpec],
    *,
    max_new_tokens: int = 48,
    batch_size: int = 8,
    sample_outputs: int = DEFAULT_SAMPLE_OUTPUTS,
) -> ScoreResult:
    names = {s.name for s in specs}
    metrics: dict[str, float] = {}
    details: dict[str, Any] = {}
    examples: list[dict[str, Any]] = [{"index": i, "scores": {}} for i in range(len(rows))]
    raw: dict[str, Any] = {}
    if "perplexity" in names:
        pairs = token_nll(lm.model, lm.tokenizer, rows, task_type, batch_size=batch_size)
        scored = [(i, n, t) for i, (n, t) in enumerate(pairs) if t > 0]
        if not scored:
            raise ValueError("test set: no row has a target token to score perplexity on")
        result = compute(
            "perplexity", nll_sum=[n for _, n, _ in scored], target_tokens=[t for _, _, t in scored]
        )
        metrics["perplexity"] = result["perplexity"]
        details["perplexity"] = {
            "formula": "exp(sum of target-token NLL over all rows / number of target tokens)",
            "mean_nll": result["mean_nll"],
            "target_tokens": result["target_tokens"],
        }
        for i, n, t in scored:
            examples[i]["scores"]["perplexity"] = math.exp(n / t)
        raw["nll"] = pairs

    prompted = [
        (i, p) for i, row in enumerate(rows) if (p := prompt_and_reference(row, task_type, lm.tokenizer))
    ]
    for i, (_, prompt_text, reference) in prompted:
        examples[i].update(prompt=prompt_text, reference=reference)
    text_metrics = names & {"bleu", "rouge", "exact_match", "f1", "bertscore"}
    if text_metrics and not prompted:
        raise ValueError(
            f"metrics: {', '.join(sorted(text_metrics))} need prompt/reference rows; this test set has none"
        )
    if not text_metrics:
        # Perplexity alone: generate only what the sample outputs show.
        prompted = prompted[:sample_outputs]
    if prompted:
        generated = generate(
            lm.model,
            lm.tokenizer,
            [p[0] for _, p in prompted],
            max_new_tokens=max_new_tokens,
            batch_size=batch_size,
        )
        for (i, _), text in zip(prompted, generated, strict=True):
            examples[i]["generated"] = text
        references = [p[2] for _, p in prompted]
        raw.update(generated=generated, references=references, prompted_index=[i for i, _ in prompted])
        per_example: dict[str, list[float]] = {}
        if "bleu" in names:
            result = compute("bleu", predictions=generated, references=references)
            metrics["bleu"] = result["bleu"]
            details["bleu"] = {"signature": result["signature"], "scale": "sacrebleu score / 100"}
            per_example["bleu"] = result["per_example"]
        if "rouge" in names:
            result = compute("rouge", predictions=generated, references=references)
            for key in ("rouge1", "rouge2", "rougeL", "rougeLsum"):
                metrics[key] = result[key]
                per_example[key] = [e[key] for e in result["per_example"]]
        if names & {"exact_match", "f1"}:
            result = compute("squad", predictions=generated, references=[[r] for r in references])
            for name, key in (("exact_match", "exact_match"), ("f1", "f1_score")):
                if name in names:
                    metrics[key] = result[key]
                    per_example[key] = [e[key] for e in result["per_example"]]
            details["squad"] = {"normalisation": "SQuAD v1.1: lower case, no punctuation/articles, 0–1 scale"}
        if "bertscore" in names:
            result = compute("bertscore", predictions=generated, references=references)
            for key in ("bertscore_precision", "bertscore_recall", "bertscore_f1"):
                metrics[key] = result[key]
                per_example[key] = [e[key] for e in result["per_example"]]
            details["bertscore"] = {"encoder": result["encoder"], "idf": False, "rescaled": False}
        for key, values in per_example.items():
            for (i, _), value in zip(prompted, values, strict=True):
                examples[i]["scores"][key] = value
        raw["per_example"] = per_example
    return ScoreResult(metrics, details, examples, raw)


def score_model(
    lm: LoadedModel,
    rows: list[dict[str, Any]],
    task_type: str,
    specs: list[MetricSpec],
    *,
    max_new_tokens: int = 48,
    batch_size: int = 8,
    sample_outputs: int = DEFAULT_SAMPLE_OUTPUTS,
) -> ScoreResult:
    if task_type in CLASSIFICATION_TASKS:
        return score_classification(lm, rows, specs)
    return score_generative(
        lm,
        rows,
        task_type,
        specs,
        max_new_tokens=max_new_tokens,
        batch_size=batch_size,
        sample_outputs=sample_outputs,
    )


# --- the seed's evaluate_model ----------------------------------------------------------------------


def format_delta(value: float) -> str:
    """Signed, like the seed: +0.15, -2.3 (at most four decimals)."""
    text = f"{round(value, 4):+f}".rstrip("0").rstrip(".")
    return "+0" if text in ("+0", "-0") else text


def comparison_to_base(metrics: dict[str, float], base: dict[str, float]) -> dict[str, str]:
    return {f"{key}_delta": format_delta(metrics[key] - base[key]) for key in metrics if key in base}


def read_test_rows(test_file: str | Path, *, max_samples: int | None = None) -> list[dict[str, Any]]:
    path = Path(test_file)
    if path.suffix.lower() in (".jsonl", ".json") and path.is_file() and not path.read_bytes().strip():
        raise ValueError(f"test set: {path.name} has no rows to evaluate on")
    dataset = load_split(test_file)
    rows = (
        dataset.to_list()
        if max_samples is None
        else dataset.select(range(min(max_samples, len(dataset)))).to_list()
    )
    if not rows:
        raise ValueError(f"test set: {Path(test_file).name} has no rows to evaluate on")
    return rows


def evaluate_model(
    *,
    model_path: str,
    test_file: str | Path,
    task_type: str,
    metrics: list[str] | None = None,
    base_model: str | None = None,
    labels: list[str] | None = None,
    labels_from: str | Path | None = None,
    compare_to_base: bool = True,
    max_samples: int | None = None,
    sample_outputs: int = DEFAULT_SAMPLE_OUTPUTS,
    max_new_tokens: int = 48,
    batch_size: int = 8,
    device: str = "auto",
    seed: int = 0,
    progress: Progress = _no_progress,
) -> dict[str, Any]:
    """The seed's EvaluationResult (without the id, which the platform assigns), plus
    ``base_metrics``, ``details`` (confusion matrix, formulas, encoder) and ``examples`` (one record
    per test row: prompt, reference, generated, per-example scores, and the base's output)."""
    specs = resolve_metrics(task_type, metrics)
    rows = read_test_rows(test_file, max_samples=max_samples)
    if task_type in CLASSIFICATION_TASKS and not labels:
        labels = classification_labels(load_split(labels_from or test_file))
    progress(0.02, f"loading {model_path}")
    lm = load_model_for_eval(
        model_path, task_type, base_model=base_model, labels=labels, device=device, seed=seed
    )
    progress(0.1, f"scoring the model on {len(rows)} rows")
    options = {"max_new_tokens": max_new_tokens, "batch_size": batch_size, "sample_outputs": sample_outputs}
    scored = score_model(lm, rows, task_type, specs, **options)
    base_scored: ScoreResult | None = None
    base_name = lm.base_model
    if compare_to_base:
        progress(0.5, f"scoring the base model {base_name or '(none)'}")
        if lm.is_adapter:
            with lm.as_base() as base:
                base_scored = score_model(base, rows, task_type, specs, **options)
        elif base_model:
            base = load_model_for_eval(base_model, task_type, labels=labels, device=device, seed=seed)
            base_scored = score_model(base, rows, task_type, specs, **options)
    progress(0.95, "collecting results")
    examples = scored.examples
    if base_scored is not None:
        for mine, theirs in zip(examples, base_scored.examples, strict=True):
            mine["base_generated"] = theirs.get("generated")
            mine["base_scores"] = theirs["scores"]
    result = {
        "model_path": model_path,
        "task_type": task_type,
        "base_model": base_name,
        "metrics": scored.metrics,
        "base_metrics": base_scored.metrics if base_scored else {},
        "comparison_to_base": comparison_to_base(scored.metrics, base_scored.metrics) if base_scored else {},
        "sample_outputs": [
            {
                "prompt": e.get("prompt", ""),
                "reference": e.get("reference", ""),
                "generated": e.get("generated", ""),
            }
            for e in examples
            if "generated" in e
        ][:sample_outputs],
        "details": {
            **scored.details,
            "base": base_scored.details if base_scored else {},
            "num_examples": len(rows),
            "labels": labels,
            "lower_is_better": sorted(k for k in scored.metrics if k in LOWER_IS_BETTER),
        },
        "examples": examples,
    }
    progress(1.0, "done")
    return result
