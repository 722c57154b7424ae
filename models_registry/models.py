from __future__ import annotations

from django.conf import settings
from django.db import models
from django.db.models import Q
from django.utils import timezone

from datasets_app.models import DatasetVersion
from experiments.models import Checkpoint, Evaluation, TrainingConfig, TrainingJob


class Stage(models.TextChoices):
    NONE = "none"
    STAGING = "staging"
    PRODUCTION = "production"
    ARCHIVED = "archived"


class RegisteredModel(models.Model):
    """One model_id of one owner: the product that versions belong to, and the text its model cards share.

    Sharing rule: model ids are a namespace per owner (unique (owner, model_id)); a model and its
    versions are visible to their owner and to admins only, and a version always belongs to a model of
    its job's owner. Its row is also the lock that serializes version numbering and promotions.
    """

    owner = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="registered_models",
        help_text="Whose namespace the model_id is in; none: visible to admins only.",
    )
    model_id = models.CharField(max_length=200)
    description = models.TextField(blank=True)
    intended_use = models.TextField(blank=True)
    limitations = models.TextField(blank=True)
    thresholds = models.JSONField(
        default=dict,
        blank=True,
        help_text='Gate thresholds when the evaluation carries none, e.g. {"accuracy": 0.9, "perplexity": {"max": 10}}.',
    )
    created_at = models.DateTimeField(default=timezone.now, editable=False)

    class Meta:
        ordering = ["model_id", "owner_id"]
        constraints = [
            models.UniqueConstraint(fields=["owner", "model_id"], name="registered_model_owner_unique"),
        ]

    def __str__(self) -> str:
        return self.model_id


class ModelVersion(models.Model):
    """The seed's version schema, with lineage to the data, config, job, checkpoint and evaluation."""

    registered = models.ForeignKey(RegisteredModel, on_delete=models.CASCADE, related_name="versions")
    model_id = models.CharField(max_length=200, help_text="e.g. t4dm-knowledge-v1 (its registered model's)")
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
    model_card_written = models.BooleanField(
        default=False,
        help_text="The card was written by a person (kept when an evaluation finishes) rather than generated.",
    )
    version_reason = models.CharField(
        max_length=300, blank=True, help_text="Why auto_version chose this number (the semver rule applied)."
    )
    created_at = models.DateTimeField(default=timezone.now, editable=False)
    created_by = models.CharField(max_length=150, default="t4dm-finetune")

    class Meta:
        ordering = ["model_id", "-created_at"]
        constraints = [
            models.UniqueConstraint(fields=["registered", "version"], name="model_version_unique_per_model"),
            # The database itself refuses a second production version of one registered model.
            models.UniqueConstraint(
                fields=["registered"],
                condition=Q(stage="production"),
                name="model_version_one_production_per_model",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.model_id}@{self.version}"

    @property
    def owner(self):
        return self.registered.owner

    @property
    def ref(self) -> str:
        return f"{self.model_id}@{self.version}"

    def set_stage(self, stage: str) -> None:
        self.stage = stage
        self.save(update_fields=["stage"])


class StageTransition(models.Model):
    """Every stage change of a version: who, when, from, to, why, and the gate as it stood."""

    version = models.ForeignKey(ModelVersion, on_delete=models.CASCADE, related_name="transitions")
    from_stage = models.CharField(max_length=20, choices=Stage.choices)
    to_stage = models.CharField(max_length=20, choices=Stage.choices)
    actor = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    actor_name = models.CharField(max_length=150, help_text="Kept when the user is deleted.")
    reason = models.TextField(blank=True)
    override = models.BooleanField(default=False, help_text="An admin promoted past failing gate items.")
    gate = models.JSONField(
        default=list, blank=True, help_text="Gate items at the time of a production promotion."
    )
    created_at = models.DateTimeField(default=timezone.now, editable=False)

    class Meta:
        ordering = ["created_at", "id"]

    def __str__(self) -> str:
        return f"{self.version} {self.from_stage} → {self.to_stage}"


class SampleReviewSignoff(models.Model):
    """An explicit record that a person read the version's sample outputs and accepts them."""

    version = models.ForeignKey(ModelVersion, on_delete=models.CASCADE, related_name="signoffs")
    reviewer = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    reviewer_name = models.CharField(max_length=150)
    note = models.TextField(blank=True)
    created_at = models.DateTimeField(default=timezone.now, editable=False)

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"{self.version} reviewed by {self.reviewer_name}"


class ModelExport(models.Model):
    """A deployable folder (merged or adapter) with tokenizer, model card and checksum manifest."""

    version = models.ForeignKey(ModelVersion, on_delete=models.CASCADE, related_name="exports")
    merged = models.BooleanField(help_text="LoRA merged into the base (merge_and_unload) or adapter kept.")
    # Exports from the page run as a Celery task (registry.export): queued → running → succeeded/failed,
    # with the step it is at; the page follows them. Rows from before had only finished exports.
    status = models.CharField(
        max_length=12,
        default="succeeded",
        choices=[(s, s) for s in ("queued", "running", "succeeded", "failed")],
    )
    progress = models.FloatField(default=1.0, help_text="0..1")
    message = models.CharField(max_length=200, blank=True, help_text="The step it is at, e.g. merging.")
    error = models.TextField(blank=True)
    path = models.CharField(max_length=500, blank=True)
    archive_path = models.CharField(max_length=500, blank=True)
    manifest = models.JSONField(default=dict)
    created_by = models.CharField(max_length=150)
    created_at = models.DateTimeField(default=timezone.now, editable=False)

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"{self.version} {'merged' if self.merged else 'adapter'} export"
