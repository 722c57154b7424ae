"""A Workflow is one run of the seed's fine-tuning chain; each WorkflowStep records one link of it
(status, timing, error, output links) so a failed chain can be retried from the failed step."""

from __future__ import annotations

from django.conf import settings
from django.db import models
from django.utils import timezone

from t4dm_site.models import OutboxUpdate
from t4dm_site.public_ids import PublicIdMixin
from t4dm_site.status import StatusTransitionsMixin


class WorkflowStatus(models.TextChoices):
    PENDING = "pending"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    BLOCKED = "blocked", "blocked by gate"  # the deployment gate refused the promotion; nothing broke


class StepName(models.TextChoices):
    PREPARE = "prepare"
    VALIDATE = "validate"
    CONFIGURE = "configure"
    TRAIN = "train"
    EVALUATE = "evaluate"
    VERSION = "version"
    PROMOTE = "promote"


STEP_ORDER = list(StepName.values)


class StepStatus(models.TextChoices):
    PENDING = "pending"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    SKIPPED = "skipped"
    BLOCKED = "blocked", "blocked by gate"


class Workflow(StatusTransitionsMixin, PublicIdMixin, models.Model):
    PUBLIC_ID_PREFIX = "wf"

    owner = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="workflows")
    name = models.CharField(max_length=200)
    input_spec = models.JSONField(default=dict, help_text="What the workflow was asked to do.")
    status = models.CharField(max_length=20, choices=WorkflowStatus.choices, default=WorkflowStatus.PENDING)
    error = models.TextField(blank=True)
    # What the steps produced, for the hooks that continue the chain and for the result page.
    dataset_version = models.ForeignKey(
        "datasets_app.DatasetVersion", null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    config = models.ForeignKey(
        "experiments.TrainingConfig", null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    job = models.ForeignKey(
        "experiments.TrainingJob", null=True, blank=True, on_delete=models.SET_NULL, related_name="workflows"
    )
    evaluation = models.ForeignKey(
        "experiments.Evaluation", null=True, blank=True, on_delete=models.SET_NULL, related_name="workflows"
    )
    model_version = models.ForeignKey(
        "models_registry.ModelVersion", null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(default=timezone.now, editable=False)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"{self.public_id} {self.name}"

    @property
    def is_terminal(self) -> bool:
        return self.status in (WorkflowStatus.SUCCEEDED, WorkflowStatus.FAILED)

    KEEPS_FIRST_START = True  # a retried workflow keeps the time it first started

    def mark_running(self) -> None:
        super().mark_running(finished_at=None, error="")


class WorkflowStep(StatusTransitionsMixin, models.Model):
    workflow = models.ForeignKey(Workflow, on_delete=models.CASCADE, related_name="steps")
    name = models.CharField(max_length=20, choices=StepName.choices)
    position = models.PositiveSmallIntegerField()
    status = models.CharField(max_length=20, choices=StepStatus.choices, default=StepStatus.PENDING)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    error = models.TextField(blank=True)
    output = models.JSONField(default=dict, blank=True, help_text="Ids, links and figures the step produced.")
    attempts = models.PositiveIntegerField(default=0)

    class Meta:
        ordering = ["workflow", "position"]
        constraints = [
            models.UniqueConstraint(fields=["workflow", "name"], name="workflow_step_unique_name"),
        ]

    def __str__(self) -> str:
        return f"{self.workflow.public_id} {self.name} ({self.status})"

    @property
    def duration_seconds(self) -> float | None:
        if not self.started_at:
            return None
        end = self.finished_at or timezone.now()
        return (end - self.started_at).total_seconds()

    def mark_running(self) -> None:
        super().mark_running(finished_at=None, error="", attempts=self.attempts + 1)

    def mark_succeeded(self, *, output: dict) -> None:
        super().mark_succeeded(output=output)

    def mark_blocked(self, *, reason: str, gate: list | None = None) -> None:
        """The promotion waits for the gate (failing checks, a second sign-off): a state a person
        resolves, not an error of the step."""
        self.status, self.error, self.finished_at = StepStatus.BLOCKED, reason, timezone.now()
        self.output = {**self.output, "failing": gate or []}
        self.save(update_fields=["status", "error", "finished_at", "output"])

    def mark_skipped(self, *, reason: str) -> None:
        self.status = StepStatus.SKIPPED
        self.output = {"reason": reason}
        self.save(update_fields=["status", "output"])

    def reset_for_retry(self) -> None:
        self.status = StepStatus.PENDING
        self.error = ""
        self.finished_at = None
        self.save(update_fields=["status", "error", "finished_at"])


class WorkflowUpdate(OutboxUpdate):
    """The workflow page's outbox: one row per change of a workflow or a step, written in the
    transaction that made the change (a WorkflowChanged subscriber). Its payload is the workflow as
    GET /api/v1/workflows/<id> shows it at that change; the websocket sends the rows after a viewer's
    cursor (the row id), so a change made by a worker process reaches every viewer in any process,
    and a viewer that reconnects with its last id gets exactly what it missed."""

    workflow = models.ForeignKey(Workflow, on_delete=models.CASCADE, related_name="updates")
    kind = models.CharField(max_length=40, help_text="The WorkflowChanged type, e.g. workflow.step_running.")

    record_field = "workflow"

    class Meta(OutboxUpdate.Meta):
        indexes = [models.Index(fields=["workflow", "id"], name="workflow_update_cursor")]
