"""What MLflow runs carry beyond a TrainingJob: the run uuid, name, params, tags and MLflow status.

An MLflow run is a tracking-only TrainingJob (no worker trains it): its metrics are ordinary metric
points written by the ingest service, so it has the same live charts as a local job.
"""

from __future__ import annotations

import uuid

from django.db import models

from experiments.models import Experiment, TrainingJob


def new_run_uuid() -> str:
    return uuid.uuid4().hex


class RunStatus(models.TextChoices):
    RUNNING = "RUNNING"
    SCHEDULED = "SCHEDULED"
    FINISHED = "FINISHED"
    FAILED = "FAILED"
    KILLED = "KILLED"


class MLflowRun(models.Model):
    run_uuid = models.CharField(max_length=32, unique=True, default=new_run_uuid, editable=False)
    job = models.OneToOneField(TrainingJob, on_delete=models.CASCADE, related_name="mlflow_run")
    experiment = models.ForeignKey(Experiment, on_delete=models.CASCADE, related_name="mlflow_runs")
    run_name = models.CharField(max_length=250, blank=True)
    status = models.CharField(max_length=12, choices=RunStatus.choices, default=RunStatus.RUNNING)
    start_time = models.BigIntegerField(help_text="Unix milliseconds.")
    end_time = models.BigIntegerField(null=True, blank=True)
    params = models.JSONField(default=dict, blank=True)
    tags = models.JSONField(default=dict, blank=True)
    lifecycle_stage = models.CharField(max_length=10, default="active")
    inputs = models.JSONField(
        default=dict,
        blank=True,
        help_text="MLflow's run inputs: {dataset_inputs: [...], model_inputs: [...]}.",
    )

    class Meta:
        ordering = ["-start_time", "-id"]
        verbose_name = "MLflow run"

    def __str__(self) -> str:
        return f"{self.run_uuid} → {self.job.public_id}"


class MetricValueExtra(models.Model):
    """A value the MLflow API received for a (run, key, step) that already holds a metric point.

    MLflow keeps every value logged at one step (three `log_metric` calls without a step are three
    values at step 0) and get-history returns them all; the metric point table keeps one value per
    (job, key, step), the rule worker retries rely on: the first one sent. The others land here, and get-history merges
    them back in timestamp order. A value identical in key, step, timestamp and value to one already
    kept is the same point sent again (MLflow's own primary key): stored once.
    """

    job = models.ForeignKey(
        TrainingJob, on_delete=models.CASCADE, related_name="mlflow_extra_values", db_constraint=False,
        db_index=False,
    )  # fmt: skip
    key = models.CharField(max_length=100)
    step = models.PositiveBigIntegerField()
    timestamp = models.BigIntegerField(help_text="Unix milliseconds, as the MLflow client sent it.")
    value = models.FloatField()

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["job", "key", "step", "timestamp", "value"], name="mlflow_extra_value_unique"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.job_id}:{self.key}@{self.step}={self.value} ({self.timestamp})"


class MLflowExperiment(models.Model):
    """What MLflow keeps on an experiment beyond T4DM's Experiment: its lifecycle stage (MLflow deletes
    and restores experiments, and the runs in them, by marking them), its tags and last update time.
    An experiment without one is active, untagged, last updated when it was created."""

    experiment = models.OneToOneField(Experiment, on_delete=models.CASCADE, related_name="mlflow_state")
    lifecycle_stage = models.CharField(max_length=10, default="active")
    tags = models.JSONField(default=dict, blank=True)
    last_update_time = models.BigIntegerField(null=True, blank=True, help_text="Unix milliseconds.")

    class Meta:
        verbose_name = "MLflow experiment state"

    def __str__(self) -> str:
        return f"{self.experiment_id} ({self.lifecycle_stage})"
