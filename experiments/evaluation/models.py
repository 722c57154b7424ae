"""Evaluations: what the evaluation services (experiments.evaluation.services) create and the
evaluation worker fills in. Part of the `experiments` app (app label and table experiments_evaluation
unchanged); experiments.models re-exports these names."""

from __future__ import annotations

from django.conf import settings
from django.db import models
from django.utils import timezone

from datasets_app.models import DatasetVersion, TaskType
from t4dm_site.models import OutboxUpdate
from t4dm_site.public_ids import PublicIdMixin
from t4dm_site.status import StatusTransitionsMixin


class EvaluationStatus(models.TextChoices):
    QUEUED = "queued"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"


class EvaluationKind(models.TextChoices):
    EVALUATE = "evaluate", "evaluate_model"
    COMPARE_MODELS = "compare_models", "compare_models"
    COMPARE_VERSIONS = "compare_versions", "compare_versions"


class Evaluation(StatusTransitionsMixin, PublicIdMixin, models.Model):
    """The seed's EvaluationResult: metrics on a test split, the deltas to the base, sample outputs.

    compare_models / compare_versions runs are evaluations too (``kind``), their result in ``comparison``.
    A Celery worker fills it in: queued → running (``progress`` 0–1) → succeeded | failed.
    """

    PUBLIC_ID_PREFIX = "eval"

    owner = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="evaluations")
    kind = models.CharField(max_length=20, choices=EvaluationKind.choices, default=EvaluationKind.EVALUATE)
    model_path = models.CharField(max_length=500)
    job = models.ForeignKey(
        "experiments.TrainingJob",
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="evaluations",
    )
    checkpoint = models.ForeignKey("experiments.Checkpoint", null=True, blank=True, on_delete=models.SET_NULL)
    dataset_version = models.ForeignKey(DatasetVersion, null=True, blank=True, on_delete=models.SET_NULL)
    split = models.CharField(max_length=20, default="test")
    task_type = models.CharField(max_length=20, choices=TaskType.choices, blank=True)
    base_model = models.CharField(
        max_length=500, blank=True, help_text="What comparison_to_base ran against."
    )
    requested_metrics = models.JSONField(default=list)
    params = models.JSONField(default=dict, blank=True, help_text="Engine options: max_samples, models, ...")
    status = models.CharField(
        max_length=20, choices=EvaluationStatus.choices, default=EvaluationStatus.QUEUED
    )
    progress = models.FloatField(default=0.0)
    progress_message = models.CharField(max_length=300, blank=True)
    metrics = models.JSONField(default=dict, blank=True)
    base_metrics = models.JSONField(default=dict, blank=True)
    comparison_to_base = models.JSONField(default=dict, blank=True)
    sample_outputs = models.JSONField(default=list, blank=True)
    details = models.JSONField(
        default=dict, blank=True, help_text="Confusion matrix, per-class scores, formulas, encoder names."
    )
    examples = models.JSONField(
        default=list, blank=True, help_text="One record per test row, for the browser."
    )
    comparison = models.JSONField(
        default=dict, blank=True, help_text="compare_models / compare_versions result."
    )
    thresholds = models.JSONField(
        default=dict, blank=True, help_text='Applied, e.g. {"accuracy": {">=": 0.85}}.'
    )
    threshold_results = models.JSONField(
        default=list,
        blank=True,
        help_text="One entry per applicable threshold: metric, op, threshold, value, passed.",
    )
    error = models.TextField(blank=True)
    created_at = models.DateTimeField(default=timezone.now, editable=False)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"{self.public_id} {self.model_path}"

    @property
    def thresholds_passed(self) -> bool | None:
        if not self.threshold_results:
            return None
        return all(entry.get("passed") for entry in self.threshold_results)

    # --- state transitions (running / succeeded / failed: StatusTransitionsMixin) ----------------
    def mark_running(self) -> None:
        super().mark_running(error="")

    def record_progress(self, *, fraction: float, message: str = "") -> None:
        self.progress = max(0.0, min(1.0, fraction))
        self.progress_message = message[:300]
        self.save(update_fields=["progress", "progress_message"])

    def mark_succeeded(self) -> None:
        super().mark_succeeded(save_all=True)  # with the results the worker set on the instance


class EvaluationUpdate(OutboxUpdate):
    """The evaluation page's outbox: one row per status or progress change, written in the transaction
    that made it (an EvaluationProgressed / EvaluationFinished subscriber). Its payload is the status
    and progress at that change; the websocket (experiments/evaluation/consumers.py) sends the rows
    after a viewer's cursor (the row id), so the worker process's progress reaches every viewer, and a
    viewer that reconnects with its last id gets exactly what it missed."""

    evaluation = models.ForeignKey(Evaluation, on_delete=models.CASCADE, related_name="updates")
    kind = models.CharField(max_length=40, help_text="evaluation.running, .progress, .completed or .failed.")

    record_field = "evaluation"

    class Meta(OutboxUpdate.Meta):
        indexes = [models.Index(fields=["evaluation", "id"], name="evaluation_update_cursor")]
