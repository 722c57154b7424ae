"""Workflow services: create a workflow, run its steps one Celery task at a time, continue when a
training job or an evaluation finishes, retry from a failed step.

Every step calls the service that already does its work (datasets_app, experiments, evaluation,
models_registry); this module only decides what runs next and records what each step produced.
Steps that hand work to another worker (train: a training job; evaluate: an evaluation) stay
`running` until that work reports its end, through `workflow_job_finished` and
`workflow_evaluation_finished`: subscribers of JobStatusChanged and EvaluationFinished
(t4dm_site.events), whichever path ended the job or the evaluation.
"""

from __future__ import annotations

import logging
import re
import shutil
from pathlib import Path
from typing import Any

from django.conf import settings
from django.db import transaction

from datasets_app.models import DatasetVersion
from datasets_app.selectors import dataset_version_get
from datasets_app.services import dataset_prepare, dataset_prepare_from_knowledge, dataset_validate
from datasets_app.sources import FORMATS
from experiments.evaluation.services import eval_queue, evaluation_start
from experiments.model_refs import base_model_resolve, tokenizer_ref
from experiments.models import Approach, Evaluation, EvaluationKind, EvaluationStatus, JobStatus, TrainingJob
from experiments.services import (
    LOCAL_APPROACHES,
    TINY_MODEL_NAME,
    hyperparameters_resolve,
    job_start,
    training_config_create,
)
from experiments.workflows.models import (
    STEP_ORDER,
    StepName,
    StepStatus,
    Workflow,
    WorkflowStatus,
    WorkflowStep,
)
from models_registry.models import Stage
from models_registry.services import (
    GateFailed,
    SecondSignoffRequired,
    model_version_create,
    model_version_transition,
)
from t4dm_site.errors import Conflict, DomainError, InvalidInput, PayloadTooLarge
from t4dm_site.events import WorkflowChanged, publish

log = logging.getLogger(__name__)
# The deployment gate's refusals: the promote step is blocked (a person acts), not failed.
GateRefused = (GateFailed, SecondSignoffRequired)

SOURCES = ("file", "knowledge", "dataset")
PROMOTE_TARGETS = ("staging", "production")
TASK_TYPES = ("chat", "instruction", "completion", "classification")
MAX_UPLOAD_BYTES = 200 * 2**20
WAITING = object()  # a step runner's answer when another worker finishes the step (train, evaluate)

# The example workflow: the shipped knowledge base and the tiny model, a couple of minutes on a CPU.
# The tiny model starts from random weights: hence a far higher learning rate than the seed's 2e-5.
DEMO_NAME = "Example workflow: knowledge base fine-tuning"
DEMO_HYPERPARAMETERS = {
    "learning_rate": 3e-3,
    "batch_size": 8,
    "gradient_accumulation": 1,
    "epochs": 5,
    "max_steps": 30,
    "lora_r": 8,
    "lora_alpha": 16,
    "warmup_ratio": 0.05,
}
DEMO_CHECKPOINTING = {"save_steps": 10, "save_total_limit": 3, "best_only": False}
DEMO_EVALUATION = {"max_samples": 6}


# --- create ------------------------------------------------------------------------------------------


def _clean_name(value: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", Path(value or "upload").name)[:100] or "upload"


def _check_spec(*, owner, spec: dict) -> dict:
    """Validate everything that can be checked before any step runs, so bad input is a 4xx and
    leaves no record behind."""
    source = spec.get("source")
    if source not in SOURCES:
        raise InvalidInput(f"source: choose one of {', '.join(SOURCES)}, got {source!r}")
    if source == "dataset":
        dataset_id = (spec.get("dataset_id") or "").strip()
        if not dataset_id:
            raise InvalidInput("dataset_id: required when source is 'dataset' (e.g. ds-001 or ds-001@v2)")
        name, _, number = dataset_id.partition("@v")
        if number and not number.isdigit():
            raise InvalidInput(f"dataset_id {dataset_id!r}: expected ds-001 or ds-001@v2")
        version = dataset_version_get(user=owner, dataset_id=name, number=int(number) if number else None)
        latest = version.dataset.latest_version
        if latest is not None and latest.pk != version.pk:
            raise InvalidInput(
                f"dataset_id {dataset_id!r}: configs train on a dataset's latest version; use "
                f"{version.dataset.public_id}@v{latest.number}"
            )
        spec["dataset_id"] = f"{version.dataset.public_id}@v{version.number}"
    if spec.get("task_type", "chat") not in TASK_TYPES:
        raise InvalidInput(f"task_type: choose one of {', '.join(TASK_TYPES)}, got {spec['task_type']!r}")
    if spec.get("format", "jsonl") not in FORMATS:
        raise InvalidInput(f"format: choose one of {', '.join(FORMATS)}, got {spec['format']!r}")
    if not (spec.get("model_base") or "").strip():
        raise InvalidInput("model_base: required (e.g. t4dm-tiny)")
    base_model_resolve(user=owner, name=spec["model_base"])  # the one model resolver: refused up front
    approach = spec.get("approach") or Approach.LORA
    if approach not in LOCAL_APPROACHES:
        raise InvalidInput(f"approach: choose one of {', '.join(sorted(LOCAL_APPROACHES))}, got {approach!r}")
    spec["approach"] = approach
    hyperparameters_resolve(spec.get("template") or None, spec.get("hyperparams"))
    target = spec.get("promote_to") or None
    if target is not None and target not in PROMOTE_TARGETS:
        raise InvalidInput(f"promote_to: choose one of {', '.join(PROMOTE_TARGETS)} or leave it out")
    spec["promote_to"] = target
    max_samples = (spec.get("evaluation") or {}).get("max_samples")
    if max_samples is not None and (
        isinstance(max_samples, bool) or not isinstance(max_samples, int) or max_samples < 1
    ):
        raise InvalidInput(f"evaluation.max_samples: must be a whole number >= 1, got {max_samples!r}")
    return spec


def _input_folder(workflow: Workflow) -> Path:
    return Path(settings.ARTIFACT_ROOT) / "workflows" / workflow.public_id


def workflow_create(
    *,
    owner,
    spec: dict[str, Any],
    upload: bytes | None = None,
    upload_name: str = "",
    name: str = "",
) -> Workflow:
    """Check the request, create the workflow and its steps, and queue the first step.

    spec: source (file | knowledge | dataset), dataset_id (source dataset), task_type/format (file),
    knowledge {knowledge_type, format, phrasings} (knowledge; no upload = the shipped example),
    model_base, approach, template, hyperparams, checkpointing, early_stopping,
    evaluation {max_samples, metrics}, model_id, promote_to (staging | production | none).
    """
    spec = _check_spec(owner=owner, spec=dict(spec))
    source = spec["source"]
    if source == "file" and not upload:
        raise InvalidInput("file: upload the dataset file (source 'file'), or choose another source")
    if source == "dataset" and upload:
        raise InvalidInput("file: not used with source 'dataset'; leave it out")
    if upload is not None and len(upload) > MAX_UPLOAD_BYTES:
        raise PayloadTooLarge(f"file: at most {MAX_UPLOAD_BYTES // 2**20} MiB")
    if source == "knowledge" and upload:
        from datasets_app.knowledge import load_knowledge

        load_knowledge(upload)  # a malformed knowledge base is a 4xx now, not a failed step later
    name = (name or spec.get("name") or "").strip()[:200] or f"{spec['model_base']} workflow"
    folder = None
    try:
        with transaction.atomic():
            workflow = Workflow.objects.create(owner=owner, name=name, input_spec=spec)
            if upload:
                folder = _input_folder(workflow)
                folder.mkdir(parents=True, exist_ok=True)
                stored = folder / _clean_name(
                    upload_name or ("knowledge.json" if source == "knowledge" else "data.jsonl")
                )
                stored.write_bytes(upload)
                spec["upload_path"] = str(stored)
                spec["upload_name"] = upload_name
                workflow.input_spec = spec
                workflow.save(update_fields=["input_spec"])
            steps = [WorkflowStep(workflow=workflow, name=n, position=i) for i, n in enumerate(STEP_ORDER)]
            WorkflowStep.objects.bulk_create(steps)
            if source == "dataset":
                version = _dataset_version_of_spec(workflow)
                workflow.dataset_version = version
                workflow.save(update_fields=["dataset_version"])
                for step in workflow.steps.filter(name__in=[StepName.PREPARE, StepName.VALIDATE]):
                    step.mark_skipped(reason=f"uses the existing dataset version {spec['dataset_id']}")
            if not spec.get("promote_to"):
                workflow.steps.get(name=StepName.PROMOTE).mark_skipped(reason="no promotion target was given")
            workflow.mark_running()
            publish(WorkflowChanged(workflow_pk=workflow.pk, webhook_type="workflow.running"))
            workflow_advance(workflow=workflow)
    except BaseException:
        if folder is not None:
            shutil.rmtree(folder, ignore_errors=True)
        raise
    return workflow


def workflow_demo_start(*, owner) -> Workflow:
    """The seed's "Example Workflow: Knowledge Base Fine-Tuning" on the shipped example and tiny model."""
    return workflow_create(
        owner=owner,
        name=DEMO_NAME,
        spec={
            "source": "knowledge",
            "knowledge": {"knowledge_type": "all", "format": "chat"},
            "model_base": TINY_MODEL_NAME,
            "approach": Approach.LORA,
            "hyperparams": dict(DEMO_HYPERPARAMETERS),
            "checkpointing": dict(DEMO_CHECKPOINTING),
            "evaluation": dict(DEMO_EVALUATION),
            "promote_to": "staging",
            "demo": True,
        },
    )


# --- running the chain -------------------------------------------------------------------------------


def _step_queue(name: str) -> str:
    if name == StepName.EVALUATE:
        return eval_queue()
    return settings.CELERY_DATASET_QUEUE


def _enqueue_on_commit(step: WorkflowStep) -> None:
    from experiments.workflows.tasks import STEP_TASKS

    task, pk, queue = STEP_TASKS[step.name], step.pk, _step_queue(step.name)
    transaction.on_commit(lambda: task.apply_async((pk,), queue=queue))


@transaction.atomic
def workflow_advance(*, workflow: Workflow) -> WorkflowStep | None:
    """Queue the next pending step, or finish the workflow when none is left. A failed step stops the
    chain: nothing after it is queued until a retry."""
    workflow = Workflow.objects.select_for_update().get(pk=workflow.pk)
    steps = list(workflow.steps.order_by("position"))
    if any(s.status in (StepStatus.FAILED, StepStatus.BLOCKED) for s in steps) or any(
        s.status == StepStatus.RUNNING for s in steps
    ):
        return None
    pending = next((s for s in steps if s.status == StepStatus.PENDING), None)
    if pending is None:
        if workflow.status != WorkflowStatus.SUCCEEDED:
            workflow.mark_succeeded()
            publish(WorkflowChanged(workflow_pk=workflow.pk, webhook_type="workflow.succeeded"))
        return None
    _enqueue_on_commit(pending)
    return pending


def _claim(step_pk: int) -> WorkflowStep | None:
    with transaction.atomic():
        step = WorkflowStep.objects.select_for_update().select_related("workflow").filter(pk=step_pk).first()
        if step is None or step.status != StepStatus.PENDING:
            return None  # a redelivered message for a step that already ran
        step.mark_running()
        publish(
            WorkflowChanged(
                workflow_pk=step.workflow_id, webhook_type="workflow.step_running", step_pk=step.pk
            )
        )
        return step


def workflow_step_run(*, step_pk: int) -> WorkflowStep | None:
    """Run one step (called by its Celery task). Not one transaction: the step shows `running` while
    the work goes on."""
    step = _claim(step_pk)
    if step is None:
        return None
    workflow = step.workflow
    try:
        outcome = RUNNERS[step.name](workflow, step)
    except GateRefused as exc:
        _step_block(step_pk=step.pk, error=exc.message, failing=(exc.details or {}).get("failing"))
    except DomainError as exc:
        _step_fail(step_pk=step.pk, error=exc.message)
    except Exception as exc:
        log.exception("workflow %s step %s failed", workflow.public_id, step.name)
        _step_fail(step_pk=step.pk, error=f"{type(exc).__name__}: {exc}")
    else:
        if outcome is not WAITING:
            _step_succeed(step_pk=step.pk, output=outcome)
    step.refresh_from_db()
    return step


@transaction.atomic
def _step_succeed(*, step_pk: int, output: dict) -> None:
    step = WorkflowStep.objects.select_for_update().select_related("workflow").get(pk=step_pk)
    if step.status != StepStatus.RUNNING:
        return  # already finished (the hook and a late check raced)
    step.mark_succeeded(output={**step.output, **output})
    publish(
        WorkflowChanged(workflow_pk=step.workflow_id, webhook_type="workflow.step_succeeded", step_pk=step.pk)
    )
    workflow_advance(workflow=step.workflow)


@transaction.atomic
def _step_fail(*, step_pk: int, error: str) -> None:
    step = WorkflowStep.objects.select_for_update().select_related("workflow").get(pk=step_pk)
    if step.status != StepStatus.RUNNING:
        return
    step.mark_failed(error=error)
    workflow = step.workflow
    workflow.mark_failed(error=f"{step.name} failed: {error}")
    publish(WorkflowChanged(workflow_pk=workflow.pk, webhook_type="workflow.step_failed", step_pk=step.pk))
    publish(WorkflowChanged(workflow_pk=workflow.pk, webhook_type="workflow.failed", step_pk=step.pk))


@transaction.atomic
def _step_block(*, step_pk: int, error: str, failing: list | None) -> None:
    """The promote step met the deployment gate's refusal: the workflow waits (blocked), to be tried
    again once someone fixes what the gate names (a sign-off, an evaluation); it did not fail."""
    step = WorkflowStep.objects.select_for_update().select_related("workflow").get(pk=step_pk)
    if step.status != StepStatus.RUNNING:
        return
    step.mark_blocked(reason=error, gate=failing)
    workflow = step.workflow
    workflow.status, workflow.error = WorkflowStatus.BLOCKED, f"{step.name} blocked by the gate: {error}"
    workflow.save(update_fields=["status", "error"])
    publish(WorkflowChanged(workflow_pk=workflow.pk, webhook_type="workflow.step_failed", step_pk=step.pk))


@transaction.atomic
def workflow_retry(*, workflow: Workflow, hyperparams: dict | None = None) -> Workflow:
    """Re-run a failed workflow from its failed step; the steps before it keep their results.

    `hyperparams` (optional) are merged into the workflow's hyperparameters: when the failed step
    comes after configure, the train step trains a new config with them (the configure step's record
    is left as it was)."""
    workflow = Workflow.objects.select_for_update().get(pk=workflow.pk)
    if workflow.status not in (WorkflowStatus.FAILED, WorkflowStatus.BLOCKED):
        raise Conflict(
            f"{workflow.public_id} is {workflow.status}; only a failed or blocked workflow can be retried"
        )
    failed = (
        workflow.steps.filter(status__in=(StepStatus.FAILED, StepStatus.BLOCKED)).order_by("position").first()
    )
    if failed is None:
        raise Conflict(f"{workflow.public_id} has no failed step to retry")
    if hyperparams:
        if not isinstance(hyperparams, dict):
            raise InvalidInput("hyperparams: must be an object of hyperparameter overrides")
        spec = dict(workflow.input_spec)
        merged = {**(spec.get("hyperparams") or {}), **hyperparams}
        hyperparameters_resolve(spec.get("template") or None, merged)
        if failed.position > STEP_ORDER.index(StepName.TRAIN):
            raise InvalidInput(
                f"hyperparams: the {failed.name} step comes after training; overrides would not be used"
            )
        spec["hyperparams"] = merged
        spec["retry_overrides"] = hyperparams
        spec["reconfigure"] = failed.position > STEP_ORDER.index(StepName.CONFIGURE)
        workflow.input_spec = spec
        workflow.save(update_fields=["input_spec"])
    failed.reset_for_retry()
    workflow.mark_running()
    publish(WorkflowChanged(workflow_pk=workflow.pk, webhook_type="workflow.running", step_pk=failed.pk))
    workflow_advance(workflow=workflow)
    return workflow


# --- hooks: the work of the train and evaluate steps ends elsewhere ------------------------------------


def _best_checkpoint(job: TrainingJob, result: dict | None) -> dict | None:
    """The best checkpoint by the one rule the job page and the API use (selectors.checkpoint_best)."""
    from experiments.selectors import checkpoint_best

    best, how = checkpoint_best(list(job.checkpoints.order_by("step")))
    if best is None:
        return None
    return {
        "step": best.step,
        "ref": f"{job.public_id}/step-{best.step}",
        "chosen_by": how,
        "metrics": best.metrics,
    }


def workflow_job_finished(*, job_pk: int, result: dict | None = None) -> None:
    """A training job ended: the workflow's train step succeeds or fails with it."""
    workflow = Workflow.objects.filter(job_id=job_pk).first()
    if workflow is None:
        return
    step = workflow.steps.filter(name=StepName.TRAIN, status=StepStatus.RUNNING).first()
    if step is None:
        return
    job = TrainingJob.objects.get(pk=job_pk)
    if job.status != JobStatus.SUCCEEDED:
        reason = job.error or f"the job was {job.status}"
        _step_fail(step_pk=step.pk, error=f"{job.public_id} {job.status}: {reason}")
        return
    result = result or {}
    final_loss = result.get("final_loss", (job.latest_metrics or {}).get("loss"))
    _step_succeed(
        step_pk=step.pk,
        output={
            "job_id": job.public_id,
            "status": job.status,
            "final_loss": final_loss,
            "steps": job.step or result.get("total_steps"),
            "epochs": round(job.epoch, 2) if job.epoch else None,
            "best_checkpoint": _best_checkpoint(job, result),
            "train_seconds": round((job.finished_at - job.started_at).total_seconds(), 1)
            if job.finished_at and job.started_at
            else None,
            "url": f"/jobs/{job.public_id}/",
        },
    )


def workflow_evaluation_finished(*, evaluation_pk: int) -> None:
    """An evaluation ended: the workflow's evaluate step succeeds or fails with it."""

    workflow = Workflow.objects.filter(evaluation_id=evaluation_pk).first()
    if workflow is None:
        return
    step = workflow.steps.filter(name=StepName.EVALUATE, status=StepStatus.RUNNING).first()
    if step is None:
        return
    evaluation = Evaluation.objects.get(pk=evaluation_pk)
    if evaluation.status == EvaluationStatus.FAILED:
        _step_fail(step_pk=step.pk, error=f"{evaluation.public_id} failed: {evaluation.error}")
    elif evaluation.status == EvaluationStatus.SUCCEEDED:
        _step_succeed(step_pk=step.pk, output=_evaluation_output(evaluation))


def _evaluation_output(evaluation) -> dict:
    return {
        "evaluation_id": evaluation.public_id,
        "status": evaluation.status,
        "metrics": evaluation.metrics,
        "base_metrics": evaluation.base_metrics,
        "comparison_to_base": evaluation.comparison_to_base,
        "thresholds_passed": evaluation.thresholds_passed,
        "url": f"/evaluations/{evaluation.public_id}/",
    }


# --- the steps ---------------------------------------------------------------------------------------


def _dataset_version_of_spec(workflow: Workflow) -> DatasetVersion:
    name, _, number = workflow.input_spec["dataset_id"].partition("@v")
    return dataset_version_get(user=workflow.owner, dataset_id=name, number=int(number) if number else None)


def _dataset_output(version: DatasetVersion) -> dict:
    stats = version.statistics or {}
    splits = version.splits or {}
    return {
        "dataset_id": version.dataset.public_id,
        "version": version.number,
        "task_type": version.task_type,
        "samples": stats.get("total_samples"),
        "split": {name: (splits.get(name) or {}).get("rows", 0) for name in ("train", "validation", "test")},
        "split_fractions": version.split_fractions,
        "url": f"/datasets/{version.dataset.public_id}/",
    }


def _run_prepare(workflow: Workflow, step: WorkflowStep) -> dict:
    spec = workflow.input_spec
    upload = Path(spec["upload_path"]).read_bytes() if spec.get("upload_path") else None
    if spec["source"] == "knowledge":
        options = spec.get("knowledge") or {}
        version = dataset_prepare_from_knowledge(
            owner=workflow.owner,
            content=upload,  # None: the shipped example knowledge base
            knowledge_type=options.get("knowledge_type", "all"),
            format=options.get("format", "chat"),
            phrasings=options.get("phrasings", 3),
            name=spec.get("dataset_name", ""),
        )
    else:
        version = dataset_prepare(
            owner=workflow.owner,
            name=spec.get("dataset_name") or Path(spec.get("upload_name") or "dataset").stem,
            content=upload,
            task_type=spec.get("task_type", "chat"),
            format=spec.get("format", "jsonl"),
            base_model=tokenizer_ref(user=workflow.owner, name=spec.get("model_base"), field="model_base"),
        )
    workflow.dataset_version = version
    workflow.save(update_fields=["dataset_version"])
    output = _dataset_output(version)
    report = version.report or {}
    if spec["source"] == "knowledge" and report:
        output["from_knowledge"] = {k: v for k, v in report.items() if isinstance(v, int | float | str)}
    return output


def _run_validate(workflow: Workflow, step: WorkflowStep) -> dict:
    version = workflow.dataset_version
    tokenizer = tokenizer_ref(
        user=workflow.owner, name=workflow.input_spec.get("model_base"), field="model_base"
    )
    result = dataset_validate(version=version, base_model=tokenizer)
    counts: dict[str, int] = {}
    for issue in result["issues"]:
        counts[issue.get("severity", "info")] = counts.get(issue.get("severity", "info"), 0) + 1
    if result["status"] == "failed":
        first = next((i for i in result["issues"] if i.get("severity") == "error"), {})
        raise InvalidInput(
            f"{version.dataset.public_id} v{version.number} failed validation: {first.get('message', 'see its page')}"
        )
    return {
        "dataset_id": version.dataset.public_id,
        "version": version.number,
        "status": result["status"],
        "issues": counts,
        "url": f"/datasets/{version.dataset.public_id}/",
    }


def _config_output(config) -> dict:
    return {
        "config_id": config.public_id,
        "experiment_id": config.experiment.public_id,
        "model_base": config.model_base,
        "approach": config.approach,
        "task_type": config.task_type,
        "template": config.template or None,
        "hyperparameters": config.hyperparameters,
        "checkpointing": config.checkpointing,
        "estimate": config.estimate,
    }


def _configure(workflow: Workflow, *, experiment=None):
    spec = workflow.input_spec
    version = workflow.dataset_version
    latest = version.dataset.latest_version
    if latest is not None and latest.pk != version.pk:
        raise InvalidInput(
            f"{version.dataset.public_id} has a newer version (v{latest.number}) than v{version.number}; "
            "configs train on a dataset's latest version: start the workflow from the latest one"
        )
    return training_config_create(
        owner=workflow.owner,
        dataset_id=version.dataset.public_id,
        model_base=spec["model_base"],
        approach=spec.get("approach") or Approach.LORA,
        hyperparams=spec.get("hyperparams"),
        template=spec.get("template") or None,
        experiment=experiment,
        early_stopping=spec.get("early_stopping"),
        checkpointing=spec.get("checkpointing"),
    )


def _run_configure(workflow: Workflow, step: WorkflowStep) -> dict:
    config = _configure(workflow)
    workflow.config = config
    workflow.save(update_fields=["config"])
    return _config_output(config)


def _run_train(workflow: Workflow, step: WorkflowStep):
    spec = dict(workflow.input_spec)
    note: dict[str, Any] = {}
    with transaction.atomic():
        if spec.pop("reconfigure", False):
            old = workflow.config
            workflow.config = _configure(workflow, experiment=old.experiment if old else None)
            workflow.input_spec = spec
            note = {
                "config_id": workflow.config.public_id,
                "reconfigured_from": old.public_id if old else None,
                "overrides": spec.get("retry_overrides"),
            }
        job = job_start(owner=workflow.owner, config=workflow.config)
        workflow.job = job
        workflow.save(update_fields=["config", "job", "input_spec"])
        WorkflowStep.objects.filter(pk=step.pk).update(
            output={**note, "job_id": job.public_id, "status": job.status, "url": f"/jobs/{job.public_id}/"}
        )
        publish(
            WorkflowChanged(workflow_pk=workflow.pk, webhook_type="workflow.step_updated", step_pk=step.pk)
        )
    return WAITING


def _run_evaluate(workflow: Workflow, step: WorkflowStep):

    job = workflow.job
    options = workflow.input_spec.get("evaluation") or {}
    with transaction.atomic():
        # compare_to_base may already have queued an evaluation of this job's auto-created version:
        # use it rather than evaluate the same model twice.
        evaluation = (
            Evaluation.objects.filter(job=job, kind=EvaluationKind.EVALUATE)
            .exclude(status=EvaluationStatus.FAILED)
            .order_by("created_at")
            .first()
        )
        if evaluation is None:
            evaluation = evaluation_start(
                owner=workflow.owner,
                job=job,
                compare_to_base=True,
                metrics=options.get("metrics"),
                max_samples=options.get("max_samples"),
            )
        workflow.evaluation = evaluation
        workflow.save(update_fields=["evaluation"])
        WorkflowStep.objects.filter(pk=step.pk).update(
            output={"evaluation_id": evaluation.public_id, "url": f"/evaluations/{evaluation.public_id}/"}
        )
        publish(
            WorkflowChanged(workflow_pk=workflow.pk, webhook_type="workflow.step_updated", step_pk=step.pk)
        )
    # It may have finished before the workflow pointed at it: then its end hook found no workflow.
    evaluation.refresh_from_db()
    if evaluation.status in (EvaluationStatus.SUCCEEDED, EvaluationStatus.FAILED):
        workflow_evaluation_finished(evaluation_pk=evaluation.pk)
    return WAITING


def _run_version(workflow: Workflow, step: WorkflowStep) -> dict:

    job = workflow.job
    model_id = workflow.input_spec.get("model_id") or None
    existing = job.model_versions.order_by("created_at")
    if model_id:
        existing = existing.filter(model_id=model_id)
    version = existing.first()
    how = "registered automatically when the job succeeded (auto_version)"
    if version is None:
        version = model_version_create(job=job, model_id=model_id)
        how = "registered by the workflow"
    workflow.model_version = version
    workflow.save(update_fields=["model_version"])
    return {
        "model_id": version.model_id,
        "version": version.version,
        "ref": version.ref,
        "reason": version.version_reason,
        "registered": how,
        "url": f"/models/{version.model_id}/{version.version}/",
    }


def _run_promote(workflow: Workflow, step: WorkflowStep) -> dict:

    target = workflow.input_spec["promote_to"]
    version = workflow.model_version
    version.refresh_from_db()
    reason = f"promoted by workflow {workflow.public_id}"
    path = [Stage.STAGING, Stage.PRODUCTION] if target == Stage.PRODUCTION else [Stage.STAGING]
    for stage in path:
        if version.stage != stage:
            # Production goes through the deployment gate; a failing gate fails this step with its checks.
            model_version_transition(version=version, to_stage=stage, actor=workflow.owner, reason=reason)
            version.refresh_from_db()
    return {
        "ref": version.ref,
        "stage": version.stage,
        "url": f"/models/{version.model_id}/{version.version}/",
    }


RUNNERS = {
    StepName.PREPARE: _run_prepare,
    StepName.VALIDATE: _run_validate,
    StepName.CONFIGURE: _run_configure,
    StepName.TRAIN: _run_train,
    StepName.EVALUATE: _run_evaluate,
    StepName.VERSION: _run_version,
    StepName.PROMOTE: _run_promote,
}
