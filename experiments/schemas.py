from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from ninja import Field, Schema
from pydantic import BaseModel


class ExperimentIn(Schema):
    name: str = Field(..., min_length=1, max_length=200)
    notes: str = ""
    tags: list[str] = []


class ExperimentOut(Schema):
    experiment_id: str
    name: str
    notes: str
    tags: list[str]
    created_at: str


class EarlyStoppingIn(Schema):
    # None: the finetune configuration file's training.early_stopping_patience.
    patience: int | None = Field(None, ge=1)
    min_delta: float = Field(0.01, ge=0)
    metric: Literal["val_loss", "val_accuracy"] = "val_loss"


class CheckpointingIn(Schema):
    # None: the finetune configuration file's checkpointing values.
    save_steps: int | None = Field(None, ge=1)
    save_total_limit: int | None = Field(None, ge=1)
    best_only: bool = False


class ConfigIn(Schema):
    model_base: str = Field(..., min_length=1, max_length=300)
    dataset_id: str
    dataset_version: int | None = None  # a version number of the dataset; None: its latest
    approach: str | None = None  # None: the finetune configuration file's default_approach
    # Checked by experiments/training/spec.py (the engine reads jobs with the same module): a bad value
    # is a 400 whose message and details.param name the field, e.g. "hyperparameters.logging_steps".
    # Keys: experiments.training.spec.Hyperparameters; max_seq_length is checked against the model.
    # gpus: processes per machine; nodes: machines (workers) for one job (docs/training.md).
    hyperparams: dict[str, Any] | None = None
    template: str | None = None
    experiment_id: str | None = None
    early_stopping: EarlyStoppingIn | None = None
    checkpointing: CheckpointingIn | None = None
    queue: str | None = None


class ConfigOut(Schema):
    config_id: str
    model_base: str
    approach: str
    hyperparameters: dict[str, Any]
    estimated_time: str
    estimated_cost: str
    dataset_id: str
    dataset_version: int  # the version number the config trains on
    experiment_id: str
    estimate: dict[str, Any]
    early_stopping: dict[str, Any] | None
    checkpointing: dict[str, Any]


class JobIn(Schema):
    config_id: str
    resume_from: str | None = None
    name: str = Field("", max_length=200)  # the run's name; empty: shown by its id
    tags: list[str] = []


class JobPatchIn(Schema):
    """Rename a run or replace its tags; a field left out stays as it is."""

    name: str | None = Field(None, max_length=200)
    tags: list[str] | None = None


class ProgressOut(Schema):
    epoch: float
    step: int
    total_steps: int


class JobMetricsOut(Schema):
    loss: float | None
    learning_rate: float | None


class JobOut(Schema):
    job_id: str
    name: str
    tags: list[str]
    status: str
    started_at: str | None
    progress: ProgressOut
    metrics: JobMetricsOut
    config_id: str
    experiment_id: str
    finished_at: str | None
    error: str | None
    cancel_requested: bool


class SeriesOut(Schema):
    series: dict[str, list[list[float]]]
    last_id: int
    downsampled: bool


# --- worker and ingest ------------------------------------------------------------------------------


class PointSchema(BaseModel):
    # A plain pydantic model, not a ninja Schema: Schema's per-object wrap validator (built for reading
    # ORM objects) was the largest part of the ingest endpoint's CPU on 5,000-point batches.
    key: str = Field(..., max_length=200)
    step: int
    value: float
    wall_time: float | None = None
    epoch: float | None = None


class PointsIn(Schema):
    points: list[PointSchema]


class IngestOut(Schema):
    created: int
    duplicates: int


class StatusIn(Schema):
    status: Literal["running", "succeeded", "failed", "cancelled"]
    worker: str = ""
    error: str = ""
    final_model_path: str = ""
    result: dict[str, Any] | None = None


class ProgressIn(Schema):
    step: int = Field(..., ge=0)
    total_steps: int = Field(..., ge=0)
    epoch: float = Field(..., ge=0)


class WorkerAckOut(Schema):
    status: str
    cancel_requested: bool


class CheckpointIn(Schema):
    step: int = Field(..., ge=0)
    path: str
    metrics: dict[str, float] = {}


class RefuseIn(Schema):
    worker: str = Field("", max_length=200)
    reason: str = Field("", max_length=2000)  # required: checked after the job token (400)


class RendezvousIn(Schema):
    # host:port of torchrun's c10d rendezvous for a multi-node job (nodes: M), from its first node.
    endpoint: str = Field(..., min_length=3, max_length=300)


class EventIn(Schema):
    level: Literal["info", "warning", "error"] = "info"
    message: str = Field(..., max_length=10000)


class WorkerHeartbeatIn(Schema):
    name: str = Field(..., min_length=1, max_length=200)
    queue: str = Field("", max_length=200)
    hostname: str = Field("", max_length=200)
    gpu_name: str = Field("", max_length=200)
    gpu_count: int = Field(0, ge=0)
    gpu_memory_total_mb: int | None = Field(None, ge=0)
    gpu_memory_free_mb: int | None = Field(None, ge=0)
    current_job_id: str | None = None
    started_at: datetime | None = None


class WorkerOut(Schema):
    name: str
    queue: str
    hostname: str
    status: str
    gpu_name: str
    gpu_count: int
    gpu_memory_total_mb: int | None
    gpu_memory_free_mb: int | None
    current_job_id: str | None
    last_heartbeat_at: str
    seconds_since_heartbeat: float
    started_at: str


# --- configure_early_stopping / configure_checkpoints / estimate_resources / resume -------------------


class EarlyStopConfigOut(Schema):
    config_id: str
    patience: int
    min_delta: float
    metric: str


class CheckpointConfigOut(Schema):
    config_id: str
    save_steps: int
    save_total_limit: int
    best_only: bool


class EstimateIn(Schema):
    """Either a stored config's id, or the fields of a config that is not stored yet."""

    config_id: str | None = None
    model_base: str | None = Field(None, max_length=300)
    dataset_id: str | None = None
    dataset_version: int | None = None  # with dataset_id: that version (default: the latest)
    approach: str | None = None
    hyperparams: dict[str, Any] | None = None
    template: str | None = None
    task_type: str = "chat"


class ResourceEstimateOut(Schema):
    gpu_memory: str
    training_time: str
    estimated_cost: str
    recommended_gpu: str
    # gpu_memory is decimal GB (10^9 bytes); the *_mb values are MiB (2^20 bytes), as workers report.
    gpu_memory_mb: int | None = None
    gpu_memory_gb: float | None = None
    gpu_memory_gib: float | None = None
    gpu_memory_mib: int | None = None
    memory_breakdown_mb: dict[str, int] | None = None
    # The GPU × count × recipe that holds the job, or fits: false with the changes that would make it fit.
    plan: dict[str, Any] | None = None
    # Where training_time applies: a GPU name from the table, "cpu" when only CPU workers are registered.
    training_device: str | None = None
    total_parameters: int | None = None
    trainable_parameters: int | None = None
    tokens_per_sec: int | None = None
    # "measured": a registered worker's tokens/s on training_device for this size class and approach
    # (the basis names the worker and the job count); "mfu": FLOPs at an assumed MFU; null: no time.
    time_basis: str | None = None
    time_source: str | None = None  # the same in words: which worker measured what, or the assumed MFU
    size_class: str | None = None
    basis: str = ""


class ResumeIn(Schema):
    step: int | None = Field(None, ge=0, description="checkpoint step; the newest when left out")
