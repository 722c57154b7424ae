"""Subscribers of lifecycle events (the table is t4dm_site.events.SUBSCRIBERS): a workflow's train and
evaluate steps end with the job or the evaluation they wait on; the workflow.* webhooks."""

from __future__ import annotations

from typing import Any

from experiments.integrations.events import emit
from experiments.workflows import services
from experiments.workflows.models import Workflow, WorkflowStep
from t4dm_site.events import EvaluationFinished, JobStatusChanged, WorkflowChanged


def workflow_job_finished(event: JobStatusChanged) -> None:
    if event.is_terminal:
        services.workflow_job_finished(job_pk=event.job_pk, result=event.result)


def workflow_evaluation_finished(event: EvaluationFinished) -> None:
    services.workflow_evaluation_finished(evaluation_pk=event.evaluation_pk)


def workflow_webhook(event: WorkflowChanged) -> None:
    """Webhooks: workflow.step_succeeded / step_failed / succeeded / failed (recorded in the transaction)."""
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
