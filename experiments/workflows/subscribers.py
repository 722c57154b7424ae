"""Subscribers of lifecycle events (the table is t4dm_site.events.SUBSCRIBERS): a workflow's train and
evaluate steps end with the job or the evaluation they wait on; the workflow.* webhooks; the workflow
page's outbox and its wake-up."""

from __future__ import annotations

from typing import Any

from experiments.integrations.events import emit
from experiments.workflows import services
from experiments.workflows.live import wake
from experiments.workflows.models import Workflow, WorkflowStep, WorkflowUpdate
from experiments.workflows.selectors import workflow_to_dict
from t4dm_site.events import EvaluationFinished, JobStatusChanged, WorkflowChanged


def workflow_job_finished(event: JobStatusChanged) -> None:
    if event.is_terminal:
        services.workflow_job_finished(job_pk=event.job_pk, result=event.result)


def workflow_evaluation_finished(event: EvaluationFinished) -> None:
    services.workflow_evaluation_finished(evaluation_pk=event.evaluation_pk)


# The WorkflowChanged types that are webhooks; the others (workflow.running, step_running,
# step_updated) only move the workflow page.
WEBHOOK_TYPES = frozenset(
    {"workflow.step_succeeded", "workflow.step_failed", "workflow.succeeded", "workflow.failed"}
)


def workflow_webhook(event: WorkflowChanged) -> None:
    """Webhooks: workflow.step_succeeded / step_failed / succeeded / failed (recorded in the transaction)."""
    if event.webhook_type not in WEBHOOK_TYPES:
        return
    workflow = Workflow.objects.get(pk=event.workflow_pk)
    payload: dict[str, Any] = {
        "workflow_id": workflow.public_id,
        "name": workflow.name,
        "status": workflow.status,
    }
    if event.step_pk is not None:
        step = WorkflowStep.objects.get(pk=event.step_pk)
        payload["step"] = {
            "name": step.name,
            "status": step.status,
            "attempts": step.attempts,
            "output": step.output,
            "error": step.error,
        }
    emit(event.webhook_type, payload)


def workflow_outbox(event: WorkflowChanged) -> None:
    """The workflow page's outbox row (in the transaction): the workflow as the API shows it now."""
    workflow = Workflow.objects.prefetch_related("steps").get(pk=event.workflow_pk)
    WorkflowUpdate.objects.create(
        workflow=workflow, kind=event.webhook_type, payload=workflow_to_dict(workflow)
    )


def workflow_live_wake(event: WorkflowChanged) -> None:
    """After commit: tell the workflow's websockets (in any process the channel layer reaches) to read
    the outbox."""
    wake(event.workflow_pk)
