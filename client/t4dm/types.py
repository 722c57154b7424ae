"""The shapes of the server's answers, as TypedDicts: results stay plain dicts (indexable, JSON-ready)
while editors and type checkers know their keys. `total=False`: a key the server adds later, or leaves
out for a kind of record, does not break a caller."""

from __future__ import annotations

from typing import Any, TypedDict


class ErrorBody(TypedDict, total=False):
    code: str
    message: str
    details: Any


class DatasetStatistics(TypedDict, total=False):
    total_samples: int
    train_samples: int
    val_samples: int
    test_samples: int
    avg_tokens_input: float
    avg_tokens_output: float


class ValidationResult(TypedDict, total=False):
    status: str  # passed | warning | failed
    issues: list[dict[str, Any]]


class DatasetResult(TypedDict, total=False):
    dataset_id: str
    name: str
    format: str
    task_type: str
    statistics: DatasetStatistics
    validation: ValidationResult
    output_path: str


class TrainingConfig(TypedDict, total=False):
    config_id: str
    model_base: str
    approach: str
    hyperparameters: dict[str, Any]
    hyperparams: dict[str, Any]
    estimated_time: str
    estimated_cost: str


class ResourceEstimate(TypedDict, total=False):
    gpu_memory: str
    training_time: str
    estimated_cost: str
    recommended_gpu: str
    gpu_memory_mb: int | None


class Progress(TypedDict, total=False):
    epoch: float
    step: int
    total_steps: int


class TrainingJob(TypedDict, total=False):
    job_id: str
    status: str  # validating | queued | running | succeeded | failed | cancelled
    started_at: str | None
    finished_at: str | None
    progress: Progress
    metrics: dict[str, float | None]
    config_id: str
    experiment_id: str
    error: str | None
    cancel_requested: bool


class MetricSeries(TypedDict, total=False):
    series: dict[str, list[list[float]]]  # key → [[step, value, ...], ...]
    last_id: int
    downsampled: bool


class JobEvent(TypedDict, total=False):
    id: int
    level: str
    message: str
    created_at: str


class Evaluation(TypedDict, total=False):
    evaluation_id: str
    model_path: str
    kind: str
    status: str
    progress: float
    metrics: dict[str, Any]
    sample_outputs: list[dict[str, Any]]


class ModelSummary(TypedDict, total=False):
    model_id: str
    owner: str | None
    description: str
    versions: int
    latest_version: str
    base_model: str
    production_version: str | None


class ModelExport(TypedDict, total=False):
    export_id: int
    merged: bool
    path: str
    files: int
    download_url: str


class ModelVersion(TypedDict, total=False):
    model_id: str
    version: str
    owner: str | None
    stage: str
    job_id: str | None
    artifact_path: str
    exports: list[ModelExport]


class ExperimentLog(TypedDict, total=False):
    experiment_id: str
    experiment_name: str
    run_id: str
    job_id: str
    config: dict[str, Any]
    metrics: dict[str, float]
    notes: str


class ExperimentComparison(TypedDict, total=False):
    experiment_ids: list[str]
    runs: list[dict[str, Any]]
    parameters: dict[str, Any]
    differing: list[str]
    metrics: list[dict[str, Any]]
