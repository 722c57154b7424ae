"""Workflow reads: visibility (owners see their own, admins all), one workflow as JSON, and the
seed-shaped result summary (samples, split, config, final loss, best checkpoint, evaluation vs base,
version)."""

from __future__ import annotations

from typing import Any

from django.db.models import QuerySet

from experiments.workflows.models import StepName, Workflow, WorkflowStep
from t4dm_site.access import get_visible, visible


def _workflows() -> QuerySet[Workflow]:
    return Workflow.objects.select_related("owner").prefetch_related("steps")


def workflows_visible_to(user) -> QuerySet[Workflow]:
    return visible(_workflows(), user)


def workflow_get(*, user, workflow_id: str) -> Workflow:
    return get_visible(_workflows(), user, workflow_id, "workflow", prefix="wf")


def _iso(value) -> str | None:
    return value.isoformat() if value else None


def step_to_dict(step: WorkflowStep) -> dict[str, Any]:
    duration = step.duration_seconds
    return {
        "name": step.name,
        "position": step.position,
        "status": step.status,
        "started_at": _iso(step.started_at),
        "finished_at": _iso(step.finished_at),
        "duration_seconds": round(duration, 2) if duration is not None else None,
        "attempts": step.attempts,
        "error": step.error or None,
        "output": step.output,
    }


def _split_text(fractions: dict | None) -> str | None:
    if not fractions:
        return None
    parts = [fractions.get(k, 0) for k in ("train", "validation", "test")]
    return "/".join(f"{round(p * 100):g}" for p in parts) + " train/val/test"


def workflow_summary(workflow: Workflow, steps: dict[str, WorkflowStep]) -> dict[str, Any]:
    """The seed's "Example Workflow" result, from what the steps recorded."""
    prepare, validate = steps[StepName.PREPARE].output, steps[StepName.VALIDATE].output
    configure, train = steps[StepName.CONFIGURE].output, steps[StepName.TRAIN].output
    evaluate, version = steps[StepName.EVALUATE].output, steps[StepName.VERSION].output
    dataset = None
    if prepare.get("dataset_id") or workflow.dataset_version_id:
        stats = prepare if prepare.get("dataset_id") else {}
        dataset = {
            "dataset_id": stats.get("dataset_id") or workflow.dataset_version.dataset.public_id,
            "version": stats.get("version") or workflow.dataset_version.number,
            "samples": stats.get("samples", (workflow.dataset_version.statistics or {}).get("total_samples")),
            "split": stats.get("split"),
            "split_text": _split_text(
                stats.get("split_fractions") or workflow.dataset_version.split_fractions
            ),
            "from_knowledge": stats.get("from_knowledge"),
            "validation": validate.get("status") or workflow.dataset_version.validation_status,
        }
    config = None
    if configure.get("config_id"):
        hp = configure.get("hyperparameters") or {}
        config = {
            "config_id": train.get("config_id") or configure["config_id"],
            "base": configure.get("model_base"),
            "approach": configure.get("approach"),
            "epochs": hp.get("epochs"),
            "max_steps": hp.get("max_steps"),
            "learning_rate": hp.get("learning_rate"),
            "estimated_time": (configure.get("estimate") or {}).get("training_time"),
        }
    training = None
    if train.get("job_id"):
        best = train.get("best_checkpoint") or {}
        training = {
            "job_id": train["job_id"],
            "final_loss": train.get("final_loss"),
            "best_checkpoint_step": best.get("step"),
            "best_checkpoint_chosen_by": best.get("chosen_by"),
            "steps": train.get("steps"),
        }
    evaluation = None
    if evaluate.get("metrics") is not None:
        evaluation = {
            "evaluation_id": evaluate.get("evaluation_id"),
            "metrics": evaluate.get("metrics"),
            "base_metrics": evaluate.get("base_metrics"),
            "vs_base": evaluate.get("comparison_to_base"),
        }
    registered = None
    if version.get("ref"):
        registered = {
            "model_id": version.get("model_id"),
            "version": version.get("version"),
            "ref": version.get("ref"),
            "stage": steps[StepName.PROMOTE].output.get("stage"),
        }
    return {
        "dataset": dataset,
        "config": config,
        "training": training,
        "evaluation": evaluation,
        "version": registered,
    }


def workflow_to_dict(workflow: Workflow) -> dict[str, Any]:
    steps = list(workflow.steps.all())
    by_name = {s.name: s for s in steps}
    return {
        "workflow_id": workflow.public_id,
        "name": workflow.name,
        "status": workflow.status,
        "error": workflow.error or None,
        "input": {k: v for k, v in workflow.input_spec.items() if k not in ("upload_path", "reconfigure")},
        "created_at": _iso(workflow.created_at),
        "started_at": _iso(workflow.started_at),
        "finished_at": _iso(workflow.finished_at),
        "steps": [step_to_dict(s) for s in sorted(steps, key=lambda s: s.position)],
        "summary": workflow_summary(workflow, by_name),
    }
