"""The generated model card (Markdown): data, config, metrics, intended use, limitations."""

from __future__ import annotations

import json

from models_registry.gates import version_evaluation

DEFAULT_INTENDED_USE = (
    "Research and internal evaluation of a model fine-tuned on the dataset below. Review the "
    "evaluation and sample outputs before relying on it for a task."
)
DEFAULT_LIMITATIONS = (
    "The model knows only what its base model and the fine-tuning data taught it; it can state wrong "
    "facts fluently. Metrics were measured on the held-out split named below and may not transfer to "
    "other data. No safety tuning was done beyond the base model's."
)


def _cell(value) -> str:
    """A hyperparameter as a Markdown table cell: lists joined, mappings as compact JSON, pipes escaped."""
    if isinstance(value, list | tuple):
        text = ", ".join(str(v) for v in value)
    elif isinstance(value, dict):
        text = json.dumps(value, sort_keys=True)
    else:
        text = str(value)
    return text.replace("|", "\\|").replace("\n", " ") or "—"


def model_card_render(version, registered=None) -> str:
    config = version.config
    dv = version.dataset_version
    evaluation = version_evaluation(version)
    metrics = (evaluation.metrics if evaluation else None) or version.evaluation_metrics or {}
    lines = [
        f"# {version.model_id} {version.version}",
        "",
        f"Fine-tuned from `{version.base_model}` by T4DM Fine-Tune ({version.provider}).",
        "",
        "## Training data",
    ]
    if dv is not None:
        stats = dv.statistics or {}
        lines += [
            f"- Dataset: {dv.dataset.public_id} ({dv.dataset.name}), version {dv.number}, "
            f"content hash `{dv.content_hash[:12]}`",
            f"- Task type: {dv.task_type}; format: {dv.format}; validation: {dv.validation_status}",
            f"- Samples: train {stats.get('train_samples', '?')}, validation {stats.get('val_samples', '?')}, "
            f"test {stats.get('test_samples', '?')}",
        ]
    else:
        lines.append("- Not recorded.")
    lines += ["", "## Training configuration"]
    if config is not None:
        lines += [
            f"- Config: {config.public_id}; approach: {config.approach}; task type: {config.task_type}",
            "",
            "| Hyperparameter | Value |",
            "|---|---|",
            *(
                f"| {name} | {_cell(value)} |"
                for name, value in sorted((config.hyperparameters or {}).items())
            ),
        ]
    else:
        lines.append("- Not recorded.")
    if version.job is not None:
        lines.append(f"- Job: {version.job.public_id}; final loss: {version.final_loss}")
    lines += ["", "## Evaluation"]
    if metrics:
        where = f" ({evaluation.public_id}, split {evaluation.split})" if evaluation else ""
        lines += [f"Metrics{where}:", ""] + [f"- {name}: {value}" for name, value in sorted(metrics.items())]
        if evaluation and evaluation.comparison_to_base:
            lines += ["", "Compared to the base model:", ""]
            lines += [f"- {name}: {value}" for name, value in sorted(evaluation.comparison_to_base.items())]
    else:
        lines.append("Not evaluated yet.")
    intended = (registered.intended_use if registered else "") or DEFAULT_INTENDED_USE
    limitations = (registered.limitations if registered else "") or DEFAULT_LIMITATIONS
    lines += ["", "## Intended use", "", intended, "", "## Limitations", "", limitations, ""]
    return "\n".join(lines)
