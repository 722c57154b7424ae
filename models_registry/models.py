from __future__ import annotations

from django.db import models
from django.utils import timezone

from datasets_app.models import DatasetVersion
from experiments.models import Checkpoint, Evaluation, TrainingConfig, TrainingJob


class Stage(models.TextChoices):
    NONE = "none"
    STAGING = "staging"
    PRODUCTION = "production"
    ARCHIVED = "archived"


class ModelVersion(models.Model):
    """The seed's version schema, with lineage to the data, config, job, checkpoint and evaluation."""

    model_id = models.CharField(max_length=200, help_text="e.g. t4dm-knowledge-v1")
    version = models.CharField(max_length=40, help_text="semver, e.g. 1.0.0")
    base_model = models.CharField(max_length=300)
    provider = models.CharField(max_length=30, default="local")
    dataset_version = models.ForeignKey(DatasetVersion, null=True, blank=True, on_delete=models.SET_NULL)
    config = models.ForeignKey(TrainingConfig, null=True, blank=True, on_delete=models.SET_NULL)
    job = models.ForeignKey(
        TrainingJob, null=True, blank=True, on_delete=models.SET_NULL, related_name="model_versions"
    )
    checkpoint = models.ForeignKey(Checkpoint, null=True, blank=True, on_delete=models.SET_NULL)
    evaluation = models.ForeignKey(Evaluation, null=True, blank=True, on_delete=models.SET_NULL)
    final_loss = models.FloatField(null=True, blank=True)
    evaluation_metrics = models.JSONField(default=dict, blank=True)
    artifact_path = models.CharField(max_length=500, blank=True)
    stage = models.CharField(max_length=20, choices=Stage.choices, default=Stage.NONE, db_index=True)
    model_card = models.TextField(blank=True)
    created_at = models.DateTimeField(default=timezone.now, editable=False)
    created_by = models.CharField(max_length=150, default="t4dm-finetune")

    class Meta:
        ordering = ["model_id", "-created_at"]
        constraints = [models.UniqueConstraint(fields=["model_id", "version"], name="model_version_unique")]

    def __str__(self) -> str:
        return f"{self.model_id}@{self.version}"
