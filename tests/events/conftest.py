"""What a job's end causes, observed from outside: a webhook delivery recorded, the live status on the
job's websocket group, the workflow step waiting on the job, and (on success) a model version."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

import pytest
from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer
from django.db.models import Max

from experiments.integrations.models import WebhookDelivery, WebhookSubscription
from experiments.live import job_group
from experiments.models import TrainingJob
from experiments.workflows.models import StepName, StepStatus, Workflow, WorkflowStatus, WorkflowStep
from models_registry.models import ModelVersion


@dataclass
class Watched:
    job: TrainingJob
    step: WorkflowStep
    channel: str
    since: int
    messages: list[dict] = field(default_factory=list)

    def webhooks(self) -> list[str]:
        """The job.* event types recorded for this job since it is watched, in order."""
        return [
            d.event_type
            for d in WebhookDelivery.objects.filter(pk__gt=self.since).order_by("pk")
            if d.event_type.startswith("job.") and d.payload["job"]["job_id"] == self.job.public_id
        ]

    def live_statuses(self) -> list[str]:
        layer = get_channel_layer()

        async def drain() -> list[dict]:
            got = []
            while True:
                try:
                    got.append(await asyncio.wait_for(layer.receive(self.channel), timeout=0.05))
                except TimeoutError:
                    return got

        self.messages += async_to_sync(drain)()
        return [m["job"]["status"] for m in self.messages if m["type"] == "job.status"]

    def step_status(self) -> str:
        self.step.refresh_from_db()
        return self.step.status

    def versions(self) -> list[ModelVersion]:
        return list(ModelVersion.objects.filter(job=self.job))


@pytest.fixture
def watch(researcher, settings):
    """watch(job): a webhook subscription to every event, a viewer on the job's websocket group and a
    workflow whose train step waits on the job."""
    settings.T4DM_VERSIONING = {"auto_version": True, "compare_to_base": False}
    WebhookSubscription.objects.create(
        url="http://127.0.0.1:9/hooks", event_types=["*"], secret="s" * 32, created_by=researcher
    )

    def make(job: TrainingJob) -> Watched:
        workflow = Workflow.objects.create(
            owner=job.owner, name="waits on the job", status=WorkflowStatus.RUNNING, job=job
        )
        step = WorkflowStep.objects.create(
            workflow=workflow, name=StepName.TRAIN, position=0, status=StepStatus.RUNNING
        )
        layer = get_channel_layer()
        channel = async_to_sync(layer.new_channel)()
        async_to_sync(layer.group_add)(job_group(job.pk), channel)
        since = WebhookDelivery.objects.aggregate(last=Max("pk"))["last"] or 0
        return Watched(job=job, step=step, channel=channel, since=since)

    return make
