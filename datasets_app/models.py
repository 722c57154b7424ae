from __future__ import annotations

from django.conf import settings
from django.db import models
from django.utils import timezone

from t4dm_site.public_ids import PublicIdMixin


class TaskType(models.TextChoices):
    CHAT = "chat", "Chat (OpenAI messages)"
    INSTRUCTION = "instruction", "Instruction (instruction/input/output)"
    COMPLETION = "completion", "Completion (prompt/completion or text)"
    CLASSIFICATION = "classification", "Classification (text/label)"


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
    created_at = models.DateTimeField(default=timezone.now, editable=False)

    class Meta:
        ordering = ["dataset", "-number"]
        constraints = [
            models.UniqueConstraint(fields=["dataset", "number"], name="dataset_version_number_unique"),
        ]

    def __str__(self) -> str:
        return f"{self.dataset.public_id} v{self.number}"
