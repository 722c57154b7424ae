from __future__ import annotations

from django.conf import settings
from django.db import models
from django.utils import timezone

from t4dm_site.models import OutboxUpdate
from t4dm_site.public_ids import PublicIdMixin
from t4dm_site.status import StatusTransitionsMixin


class TaskType(models.TextChoices):
    CHAT = "chat", "Chat (OpenAI messages)"
    INSTRUCTION = "instruction", "Instruction (instruction/input/output)"
    COMPLETION = "completion", "Completion (prompt/completion or text)"
    CLASSIFICATION = "classification", "Classification (text/label)"
    PREFERENCE = "preference", "Preference (prompt/chosen/rejected)"


class Dataset(PublicIdMixin, models.Model):
    """A named dataset; its content lives in immutable versions."""

    PUBLIC_ID_PREFIX = "ds"

    name = models.CharField(max_length=200)
    owner = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="datasets")
    task_type = models.CharField(max_length=20, choices=TaskType.choices)
    description = models.TextField(blank=True)
    created_at = models.DateTimeField(default=timezone.now, editable=False)

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"{self.public_id} {self.name}"

    @property
    def latest_version(self) -> DatasetVersion | None:
        return self.versions.order_by("-number").first()


class ValidationStatus(models.TextChoices):
    PASSED = "passed"
    WARNING = "warning"
    FAILED = "failed"


class VersionOrigin(models.TextChoices):
    UPLOAD = "upload", "Uploaded"
    IMPORT = "import", "Imported from the import root"
    KNOWLEDGE = "knowledge", "Built from a knowledge base"
    CLEANED = "cleaned", "Cleaned"
    AUGMENTED = "augmented", "Augmented"


class DatasetVersion(models.Model):
    """Immutable content of a dataset: split files on disk, identified by a content hash."""

    dataset = models.ForeignKey(Dataset, on_delete=models.CASCADE, related_name="versions")
    number = models.PositiveIntegerField()
    content_hash = models.CharField(max_length=64, db_index=True)
    format = models.CharField(max_length=20)
    task_type = models.CharField(max_length=20, choices=TaskType.choices)
    path = models.CharField(max_length=500, help_text="Folder holding one file per split.")
    splits = models.JSONField(default=dict, help_text="split name → {file, rows}")
    statistics = models.JSONField(default=dict)
    validation_status = models.CharField(max_length=10, choices=ValidationStatus.choices)
    validation_issues = models.JSONField(default=list)
    origin = models.CharField(max_length=20, choices=VersionOrigin.choices, default=VersionOrigin.UPLOAD)
    parent = models.ForeignKey(
        "self",
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="children",
        help_text="The version this one was cleaned or augmented from.",
    )
    source = models.CharField(max_length=500, blank=True, help_text="File name or import path.")
    seed = models.IntegerField(default=42)
    split_fractions = models.JSONField(default=dict)
    tokenizer = models.CharField(max_length=500, blank=True, help_text="Base model whose tokenizer counted.")
    report = models.JSONField(
        default=dict, blank=True, help_text="What cleaning/augmentation/import changed, with examples."
    )
    created_at = models.DateTimeField(default=timezone.now, editable=False)

    class Meta:
        ordering = ["dataset", "-number"]
        constraints = [
            models.UniqueConstraint(fields=["dataset", "number"], name="dataset_version_number_unique"),
        ]

    def __str__(self) -> str:
        return f"{self.dataset.public_id} v{self.number}"


class DatasetTaskStatus(models.TextChoices):
    QUEUED = "queued"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"


class DatasetTask(StatusTransitionsMixin, PublicIdMixin, models.Model):
    """Long dataset work run by a Celery worker on the datasets queue, with progress: "augment" (from a
    source version) and "prepare" (a large upload or import, no source version; the result is a new
    dataset)."""

    PUBLIC_ID_PREFIX = "dstask"

    kind = models.CharField(max_length=20, default="augment")
    owner = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+")
    source_version = models.ForeignKey(
        DatasetVersion, null=True, blank=True, on_delete=models.CASCADE, related_name="tasks"
    )
    params = models.JSONField(default=dict)
    status = models.CharField(
        max_length=10, choices=DatasetTaskStatus.choices, default=DatasetTaskStatus.QUEUED
    )
    progress = models.FloatField(default=0.0)
    message = models.CharField(max_length=500, blank=True)
    error = models.TextField(blank=True)
    error_details = models.JSONField(
        default=dict, blank=True, help_text="A refusal's details, e.g. the first bad row's line."
    )
    result_version = models.ForeignKey(
        DatasetVersion, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(default=timezone.now, editable=False)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"{self.public_id} {self.kind} {self.status}"

    def mark_progress(self, fraction: float, message: str = "") -> None:
        self.progress = max(0.0, min(1.0, fraction))
        self.message = message[:500]
        self.save(update_fields=["progress", "message", "updated_at"])

    def mark_succeeded(self, version: DatasetVersion) -> None:
        super().mark_succeeded(result_version=version, message=f"created {version}")

    def mark_failed(self, error: str, details: dict | None = None) -> None:
        super().mark_failed(error=error, error_details=details or {})


class DatasetTaskUpdate(OutboxUpdate):
    """The dataset page's outbox for a task: one row per status or progress change of a DatasetTask,
    written in the transaction that made it (a DatasetTaskChanged subscriber), holding the task as GET
    /api/v1/datasets/tasks/<id> shows it (without a prepare's full result). The websocket
    (datasets_app/consumers.py) sends the rows after a viewer's cursor (the row id)."""

    task = models.ForeignKey(DatasetTask, on_delete=models.CASCADE, related_name="updates")
    kind = models.CharField(max_length=40, help_text="dataset_task.running, .succeeded, .failed.")

    record_field = "task"

    class Meta(OutboxUpdate.Meta):
        indexes = [models.Index(fields=["task", "id"], name="dataset_task_update_cursor")]
