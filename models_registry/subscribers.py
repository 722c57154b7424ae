"""Subscribers of lifecycle events (the table is t4dm_site.events.SUBSCRIBERS): auto_version for a
succeeded job, and the model_version.* webhooks."""

from __future__ import annotations

from experiments.integrations.events import emit
from experiments.models import JobStatus, TrainingJob
from models_registry.models import ModelVersion
from models_registry.services import model_version_auto_create
from t4dm_site.events import JobStatusChanged, ModelVersionCreated, ModelVersionStageChanged


def version_auto_create(event: JobStatusChanged) -> None:
    """auto_version: a succeeded job's model becomes the next version of its model id (whichever path
    ended the job: a worker, an MLflow client, an OpenAI fine-tuning job). Idempotent."""
    if event.status != JobStatus.SUCCEEDED:
        return
    job = TrainingJob.objects.select_related("config", "owner").get(pk=event.job_pk)
    # A tracking-only run (an MLflow client's) ends with no model: nothing to register.
    if job.status == JobStatus.SUCCEEDED and job.final_model_path:
        model_version_auto_create(job=job)


def version_webhook(event: ModelVersionCreated | ModelVersionStageChanged) -> None:
    """Webhooks: model_version.created / model_version.stage_changed (recorded in the transaction)."""
    version = ModelVersion.objects.select_related("registered__owner", "job").get(pk=event.version_pk)
    extra = {}
    if isinstance(event, ModelVersionStageChanged):
        extra = {"from_stage": event.from_stage, "to_stage": event.to_stage, "actor": event.actor}
    emit(
        event.webhook_type,
        {
            "model_id": version.model_id,
            "owner": getattr(version.registered.owner, "username", None),
            "version": version.version,
            "ref": version.ref,
            "stage": version.stage,
            "base_model": version.base_model,
            "job_id": version.job.public_id if version.job_id else None,
            "metadata_url": f"/api/v1/models/{version.model_id}/versions/{version.version}/metadata",
            **extra,
        },
    )
