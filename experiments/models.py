from __future__ import annotations

import secrets

from django.conf import settings
from django.db import models
from django.utils import timezone

from datasets_app.models import DatasetVersion, TaskType

# Evaluations live next to their services and stay models of this app (same label and table).
from experiments.evaluation.models import Evaluation, EvaluationKind, EvaluationStatus  # noqa: F401
from t4dm_site.models import hash_token
from t4dm_site.public_ids import PublicIdMixin
from t4dm_site.status import StatusTransitionsMixin

JOB_TOKEN_PREFIX = "t4job_"
# How many superseded/ended worker tokens of a job are remembered, to answer them 409 instead of 401.
RETIRED_TOKENS_KEPT = 20


class Experiment(PublicIdMixin, models.Model):
    """Groups configs and jobs that answer one question, with notes and tags.

    Sharing rule: an experiment and everything under it are private to their owner; admins see all.
    """

    PUBLIC_ID_PREFIX = "exp"

    name = models.CharField(max_length=200)
    owner = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="experiments")
    notes = models.TextField(blank=True)
    tags = models.JSONField(default=list, blank=True)
    created_at = models.DateTimeField(default=timezone.now, editable=False)

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"{self.public_id} {self.name}"


class Approach(models.TextChoices):
    FULL = "full", "Full fine-tune"
    LORA = "lora", "LoRA"
    QLORA = "qlora", "QLoRA"
    PROMPT_TUNING = "prompt_tuning", "Prompt tuning"
    API = "api", "API fine-tune"


class TrainingConfig(PublicIdMixin, models.Model):
    """A resolved training configuration: what `configure_training` returns."""

    PUBLIC_ID_PREFIX = "cfg"

    owner = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="training_configs"
    )
    experiment = models.ForeignKey(Experiment, on_delete=models.CASCADE, related_name="configs")
    dataset_version = models.ForeignKey(DatasetVersion, on_delete=models.PROTECT, related_name="configs")
    model_base = models.CharField(
        max_length=300, help_text="Hub id, local path, or 'tiny' for the built-in model."
    )
    approach = models.CharField(max_length=20, choices=Approach.choices, default=Approach.LORA)
    task_type = models.CharField(max_length=20, choices=TaskType.choices)
    template = models.CharField(max_length=30, blank=True)
    hyperparameters = models.JSONField(default=dict)
    early_stopping = models.JSONField(null=True, blank=True)
    checkpointing = models.JSONField(default=dict)
    estimate = models.JSONField(default=dict)
    queue = models.CharField(
        max_length=100,
        blank=True,
        help_text="Celery queue (GPU class) the job is routed to; blank = the default training queue.",
    )
    created_at = models.DateTimeField(default=timezone.now, editable=False)

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"{self.public_id} {self.model_base} {self.approach}"


class JobStatus(models.TextChoices):
    VALIDATING = "validating"
    QUEUED = "queued"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"


TERMINAL_STATUSES = frozenset({JobStatus.SUCCEEDED, JobStatus.FAILED, JobStatus.CANCELLED})


class TrainingJob(StatusTransitionsMixin, PublicIdMixin, models.Model):
    """One run of a config on a worker. State moves validating → queued → running → a terminal state."""

    PUBLIC_ID_PREFIX = "job"

    owner = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="training_jobs"
    )
    config = models.ForeignKey(TrainingConfig, on_delete=models.PROTECT, related_name="jobs")
    experiment = models.ForeignKey(Experiment, on_delete=models.CASCADE, related_name="jobs")
    # What people call the run (editable; empty: the run is shown by its id) and the run's own tags
    # (shown with its experiment's tags in the runs table).
    name = models.CharField(max_length=200, blank=True)
    tags = models.JSONField(default=list, blank=True)
    status = models.CharField(
        max_length=20, choices=JobStatus.choices, default=JobStatus.VALIDATING, db_index=True
    )
    epoch = models.FloatField(default=0)
    step = models.PositiveIntegerField(default=0)
    total_steps = models.PositiveIntegerField(default=0)
    latest_metrics = models.JSONField(default=dict, blank=True)
    worker = models.CharField(max_length=200, blank=True)
    heartbeat_at = models.DateTimeField(null=True, blank=True)
    cancel_requested = models.BooleanField(default=False)
    resume_from = models.ForeignKey(
        "Checkpoint", null=True, blank=True, on_delete=models.SET_NULL, related_name="resumed_jobs"
    )
    token_hash = models.CharField(max_length=64, blank=True, editable=False)
    # Fencing: each attempt (a worker's run of the job) has its own number and token. A requeue (lost
    # worker, refusal) starts a new attempt; the end of the job retires the last one. Retired tokens
    # are remembered (hashes only) so a late report from a superseded attempt gets 409, not 401.
    attempt = models.PositiveIntegerField(
        default=0, editable=False, help_text="The running attempt; a requeue starts the next one."
    )
    retired_token_hashes = models.JSONField(default=list, blank=True, editable=False)
    output_dir = models.CharField(max_length=500, blank=True)
    final_model_path = models.CharField(max_length=500, blank=True)
    error = models.TextField(blank=True)
    # A multi-node job: {"endpoint": "host:port", "attempt": n}, published by its first node for the
    # attempt it runs (experiments/training/rendezvous.py).
    rendezvous = models.JSONField(default=dict, blank=True, editable=False)
    lost_count = models.PositiveIntegerField(
        default=0, help_text="How many times the job's worker stopped heartbeating mid-run."
    )
    created_at = models.DateTimeField(default=timezone.now, editable=False)
    queued_at = models.DateTimeField(null=True, blank=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]
        # The runs table's default order, newest first, for one owner (a researcher) or everyone (admins):
        # its first page of 10,000 runs is an index scan (benchmarks/runs_at_scale.py).
        indexes = [
            models.Index(fields=["owner", "-created_at", "-id"], name="training_job_owner_created"),
            models.Index(fields=["-created_at", "-id"], name="training_job_created"),
        ]

    def __str__(self) -> str:
        return f"{self.public_id} ({self.status})"

    @property
    def is_terminal(self) -> bool:
        return self.status in TERMINAL_STATUSES

    # --- state transitions: each sets every field that must change together -----------------------
    def issue_token(self) -> str:
        """A fresh worker token for a new attempt of this job; only its hash is kept, and the previous
        attempt's token stops working (a worker still running it is fenced off). Call before mark_queued."""
        raw = f"{JOB_TOKEN_PREFIX}{self.pk}_{secrets.token_urlsafe(32)}"
        self._retire_token()
        self.token_hash = hash_token(raw)
        self.attempt += 1
        self.save(update_fields=["token_hash", "attempt", "retired_token_hashes"])
        return raw

    def _retire_token(self) -> None:
        """The current attempt's token stops working (the caller saves token_hash and
        retired_token_hashes)."""
        if self.token_hash:
            kept = [h for h in self.retired_token_hashes or [] if h != self.token_hash]
            self.retired_token_hashes = [*kept, self.token_hash][-RETIRED_TOKENS_KEPT:]
        self.token_hash = ""

    def token_retired(self, raw: str) -> bool:
        """Whether ``raw`` was this job's token for an attempt that is over (superseded or ended)."""
        return hash_token(raw) in (self.retired_token_hashes or [])

    def mark_queued(self) -> None:
        self.status = JobStatus.QUEUED
        self.queued_at = timezone.now()
        self.cancel_requested = False
        self.error = ""
        self.finished_at = None
        self.save(update_fields=["status", "queued_at", "cancel_requested", "error", "finished_at"])

    KEEPS_FIRST_START = True  # a requeued job keeps the time it first started

    def mark_running(self, *, worker: str) -> None:
        super().mark_running(worker=worker, heartbeat_at=timezone.now())

    def record_progress(self, *, step: int, total_steps: int, epoch: float) -> None:
        self.step, self.total_steps, self.epoch = step, total_steps, epoch
        self.heartbeat_at = timezone.now()
        self.save(update_fields=["step", "total_steps", "epoch", "heartbeat_at"])

    def mark_succeeded(self, *, final_model_path: str = "") -> None:
        self._retire_token()  # the worker token dies with the job
        super().mark_succeeded(final_model_path=final_model_path, **self._token_fields())

    def mark_failed(self, *, error: str) -> None:
        self._retire_token()  # the worker token dies with the job
        super().mark_failed(error=error, **self._token_fields())

    def _token_fields(self) -> dict:
        return {"token_hash": self.token_hash, "retired_token_hashes": self.retired_token_hashes}

    def mark_cancelled(self) -> None:
        self.status = JobStatus.CANCELLED
        self.cancel_requested = True
        self.finished_at = timezone.now()
        self._retire_token()  # the worker token dies with the job
        self.save(
            update_fields=["status", "cancel_requested", "finished_at", "token_hash", "retired_token_hashes"]
        )

    def mark_lost_and_requeued(self) -> None:
        """Its worker stopped heartbeating: back to the queue (a new token is issued by the caller)."""
        self.status = JobStatus.QUEUED
        self.lost_count += 1
        self.queued_at = timezone.now()
        self.worker = ""
        self.save(update_fields=["status", "lost_count", "queued_at", "worker"])

    def request_cancel(self) -> None:
        """A running job stops at its next step, when its worker sees the flag."""
        self.cancel_requested = True
        self.save(update_fields=["cancel_requested"])


class JobEvent(models.Model):
    """The job's history and log tail: status changes, worker messages, interruptions."""

    class Level(models.TextChoices):
        INFO = "info"
        WARNING = "warning"
        ERROR = "error"

    job = models.ForeignKey(TrainingJob, on_delete=models.CASCADE, related_name="events")
    level = models.CharField(max_length=10, choices=Level.choices, default=Level.INFO)
    message = models.TextField()
    created_at = models.DateTimeField(default=timezone.now, editable=False)

    class Meta:
        ordering = ["id"]

    def __str__(self) -> str:
        return f"{self.job.public_id} {self.level}: {self.message[:60]}"


class MetricPoint(models.Model):
    """One value of one metric at one step. (job, key, step) is unique: ingest is idempotent on it,
    and the auto-increment id is the order in which points became visible (websocket resume cursor)."""

    # No database foreign key or job_id index on the two metric tables: the ingest inserts points only
    # for a job row it holds locked, so no point can be an orphan, and Django still deletes a job's
    # points with it (on_delete). A per-row foreign key check cost a quarter of PostgreSQL's time per
    # batch; the (job, key, step) and (job, id) indexes serve every query by job. On PostgreSQL the
    # (job, id) index is the table's primary key (migration 0015): one index less for every point
    # stored; `id` stays unique (an identity column), but a lookup by id alone scans the table — every
    # query names the job. A later migration that alters `id` or this index must do so in SQL there.
    job = models.ForeignKey(
        TrainingJob,
        on_delete=models.CASCADE,
        related_name="metric_points",
        db_constraint=False,
        db_index=False,
    )
    key = models.CharField(max_length=100)
    step = models.PositiveBigIntegerField()
    value = models.FloatField()
    wall_time = models.FloatField(help_text="Unix time at which the worker measured the value.")
    epoch = models.FloatField(null=True, blank=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["job", "key", "step"], name="metric_point_job_key_step_unique"),
        ]
        indexes = [models.Index(fields=["job", "id"], name="metric_point_job_id")]

    def __str__(self) -> str:
        return f"{self.job_id}:{self.key}@{self.step}={self.value}"


class MetricRollup(models.Model):
    """Min/max/count of one series over a fixed run of ROLLUP_WIDTH steps, kept by the ingest service in
    the same transaction as the points. A chart's first look at a million-point series reads ~16k of
    these instead of aggregating every point."""

    ROLLUP_WIDTH = 256

    job = models.ForeignKey(
        TrainingJob,
        on_delete=models.CASCADE,
        related_name="metric_rollups",
        db_constraint=False,
        db_index=False,
    )
    key = models.CharField(max_length=100)
    bucket = models.PositiveBigIntegerField(help_text="step // ROLLUP_WIDTH")
    lo = models.FloatField()
    hi = models.FloatField()
    n = models.PositiveIntegerField()
    first_wall_time = models.FloatField()
    last_step = models.PositiveBigIntegerField()
    # Where the bucket starts and where its extremes happened: a downsampled read (first, last, min and
    # max per bucket, M4) places each point at its own step instead of at the bucket's edges.
    first_step = models.PositiveBigIntegerField()
    lo_step = models.PositiveBigIntegerField()
    hi_step = models.PositiveBigIntegerField()

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["job", "key", "bucket"], name="metric_rollup_job_key_bucket_unique"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.job_id}:{self.key}[{self.bucket}]"


class Checkpoint(models.Model):
    job = models.ForeignKey(TrainingJob, on_delete=models.CASCADE, related_name="checkpoints")
    step = models.PositiveIntegerField()
    path = models.CharField(max_length=500)
    metrics = models.JSONField(default=dict)
    is_best = models.BooleanField(default=False)
    created_at = models.DateTimeField(default=timezone.now, editable=False)

    class Meta:
        ordering = ["job", "step"]
        constraints = [models.UniqueConstraint(fields=["job", "step"], name="checkpoint_job_step_unique")]

    def __str__(self) -> str:
        return f"{self.job.public_id} step {self.step}"


class WorkerStatus(models.TextChoices):
    IDLE = "idle"
    BUSY = "busy"
    LOST = "lost"


class Worker(models.Model):
    """A Celery training worker (one per GPU) as its heartbeats describe it.

    Workers never touch the database: they POST /api/v1/worker/heartbeat with the shared worker
    secret, and the web side marks a worker (and its job) lost when the heartbeats stop.
    """

    name = models.CharField(max_length=200, unique=True, help_text="Celery node name, e.g. gpu0@host.")
    queue = models.CharField(max_length=200, blank=True, help_text="Comma-separated queues it consumes.")
    hostname = models.CharField(max_length=200, blank=True)
    gpu_name = models.CharField(max_length=200, blank=True)
    gpu_count = models.PositiveIntegerField(default=0)
    gpu_memory_total_mb = models.PositiveIntegerField(null=True, blank=True)
    gpu_memory_free_mb = models.PositiveIntegerField(null=True, blank=True)
    current_job = models.ForeignKey(
        TrainingJob, null=True, blank=True, on_delete=models.SET_NULL, related_name="current_workers"
    )
    status = models.CharField(
        max_length=10, choices=WorkerStatus.choices, default=WorkerStatus.IDLE, db_index=True
    )
    last_heartbeat_at = models.DateTimeField(default=timezone.now)
    started_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return f"{self.name} ({self.status})"

    def mark_lost(self) -> None:
        self.status = WorkerStatus.LOST
        self.current_job = None
        self.save(update_fields=["status", "current_job"])


class WorkerThroughput(models.Model):
    """A worker's measured training speed for one model size class, approach and device: the running
    mean of the non-padding tokens/s its succeeded jobs reported (recorded by the JobStatusChanged
    subscriber ``experiments.subscribers.worker_throughput``). Estimates time a job on the device they
    pick with it (experiments/training/resources.py, ``SIZE_CLASSES``)."""

    worker = models.ForeignKey(Worker, on_delete=models.CASCADE, related_name="throughputs")
    size_class = models.CharField(
        max_length=10, help_text="Parameter bucket, e.g. <1.5B (resources.SIZE_CLASSES)."
    )
    approach = models.CharField(max_length=20, choices=Approach.choices)
    device = models.CharField(max_length=200, help_text='"cpu", or the GPU the job ran on.')
    tokens_per_sec = models.FloatField(help_text="Running mean over the jobs below.")
    samples = models.PositiveIntegerField(default=0, help_text="Jobs measured.")
    updated_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["worker", "size_class", "approach"]
        constraints = [
            models.UniqueConstraint(
                fields=["worker", "size_class", "approach", "device"], name="worker_throughput_unique"
            )
        ]

    def __str__(self) -> str:
        return f"{self.worker.name} {self.size_class} {self.approach} on {self.device}: {self.tokens_per_sec:.0f} tokens/s"


class SavedRunsView(models.Model):
    """A name for a runs-table query (filters, columns, sort, grouping: the page's query string), kept
    per account on the server so it follows its owner to any browser."""

    owner = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="runs_views")
    name = models.CharField(max_length=80)
    query = models.CharField(max_length=2000, blank=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["name"]
        constraints = [models.UniqueConstraint(fields=["owner", "name"], name="saved_runs_view_per_owner")]

    def __str__(self) -> str:
        return f"{self.owner} · {self.name}"
