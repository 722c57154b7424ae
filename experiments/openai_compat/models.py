"""What the OpenAI object model has and ours does not: uploaded files and fine-tuning job options.

A file maps onto a dataset version (prepared and validated at upload); a fine-tuning job onto a
TrainingJob. OpenAI ids are opaque strings (`file-…`, `ftjob-…`) kept here next to our keys.
"""

from __future__ import annotations

import secrets

from django.conf import settings
from django.db import models
from django.utils import timezone

from datasets_app.models import DatasetVersion
from experiments.models import TrainingJob


def _opaque(prefix: str) -> str:
    return prefix + secrets.token_hex(12)


def new_file_id() -> str:
    return _opaque("file-")


def new_job_id() -> str:
    return _opaque("ftjob-")


class OpenAIFile(models.Model):
    file_id = models.CharField(max_length=40, unique=True, default=new_file_id, editable=False)
    owner = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="openai_files")
    filename = models.CharField(max_length=300)
    purpose = models.CharField(max_length=30, default="fine-tune")
    content = models.BinaryField(help_text="The uploaded bytes, served back by GET /v1/files/{id}/content.")
    dataset_version = models.ForeignKey(
        DatasetVersion, null=True, blank=True, on_delete=models.SET_NULL, related_name="openai_files"
    )
    created_at = models.DateTimeField(default=timezone.now, editable=False)
    deleted_at = models.DateTimeField(
        null=True,
        blank=True,
        help_text="Set by DELETE /v1/files/{id}: the bytes are removed and the id answers 404; the row stays "
        "for the fine-tuning jobs that name it.",
    )

    class Meta:
        ordering = ["-created_at", "-id"]
        verbose_name = "OpenAI file"

    def __str__(self) -> str:
        return f"{self.file_id} {self.filename}"


class OpenAIFineTuneJob(models.Model):
    ftjob_id = models.CharField(max_length=40, unique=True, default=new_job_id, editable=False)
    job = models.OneToOneField(TrainingJob, on_delete=models.CASCADE, related_name="openai")
    training_file = models.ForeignKey(OpenAIFile, on_delete=models.PROTECT, related_name="training_jobs")
    validation_file = models.ForeignKey(
        OpenAIFile, null=True, blank=True, on_delete=models.PROTECT, related_name="validation_jobs"
    )
    model = models.CharField(max_length=300, help_text="The base model as the client named it.")
    suffix = models.CharField(max_length=64, blank=True)
    seed = models.IntegerField()
    metadata = models.JSONField(null=True, blank=True)
    hyperparameters = models.JSONField(
        default=dict, help_text="n_epochs, batch_size, learning_rate_multiplier, with 'auto' resolved."
    )
    created_at = models.DateTimeField(default=timezone.now, editable=False)

    class Meta:
        ordering = ["-created_at", "-id"]
        verbose_name = "OpenAI fine-tuning job"

    def __str__(self) -> str:
        return f"{self.ftjob_id} → {self.job.public_id}"


class ProviderJob(models.Model):
    """A fine-tuning job run by an outside provider (finetune_openai), followed into a TrainingJob."""

    job = models.OneToOneField(TrainingJob, on_delete=models.CASCADE, related_name="provider_job")
    provider = models.CharField(max_length=30, default="openai")
    base_url = models.CharField(max_length=500, blank=True)
    remote_file_id = models.CharField(max_length=100, blank=True)
    remote_job_id = models.CharField(max_length=100, blank=True, db_index=True)
    remote_status = models.CharField(max_length=30, blank=True)
    fine_tuned_model = models.CharField(max_length=300, blank=True)
    seen_event_ids = models.JSONField(
        default=list, blank=True, help_text="Remote events already turned into points/log lines."
    )
    created_at = models.DateTimeField(default=timezone.now, editable=False)

    class Meta:
        ordering = ["-created_at", "-id"]

    def __str__(self) -> str:
        return f"{self.provider}:{self.remote_job_id} → {self.job.public_id}"
