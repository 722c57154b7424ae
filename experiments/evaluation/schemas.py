"""Request/response schemas of the evaluation API (explicit fields, seed names)."""

from __future__ import annotations

from typing import Any

from ninja import Schema


class EvaluateIn(Schema):
    model_path: str | None = None
    job_id: str | None = None
    test_dataset: str | None = None
    split: str = "test"
    metrics: list[str] | None = None
    base_model: str | None = None
    compare_to_base: bool = True
    max_samples: int | None = None
    thresholds: dict[str, Any] | None = None


class CompareModelsIn(Schema):
    models: list[str]
    test_cases: list[dict[str, Any]] | None = None
    test_dataset: str | None = None
    task_type: str | None = None
    metrics: list[str] | None = None
    max_samples: int | None = None


class CompareVersionsIn(Schema):
    version_a: str
    version_b: str
    test_dataset: str | None = None
    metrics: list[str] | None = None
    resamples: int = 1000
    max_samples: int | None = None


class EvaluationOut(Schema):
    model_path: str
    evaluation_id: str
    kind: str
    status: str
    progress: float
    progress_message: str
    metrics: dict[str, Any]
    comparison_to_base: dict[str, str]
    sample_outputs: list[dict[str, Any]]
    base_model: str
    base_metrics: dict[str, Any]
    task_type: str
    requested_metrics: list[str]
    job_id: str | None
    checkpoint_step: int | None
    test_dataset: str | None
    split: str
    thresholds: dict[str, Any]
    threshold_results: list[dict[str, Any]]
    thresholds_passed: bool | None
    details: dict[str, Any]
    error: str
    created_at: str
    finished_at: str | None
    comparison: dict[str, Any] | None = None


class ExamplesOut(Schema):
    evaluation_id: str
    sort: str | None
    order: str
    only: str
    score_keys: list[str]
    total: int
    offset: int
    examples: list[dict[str, Any]]


class ThresholdsOut(Schema):
    thresholds: dict[str, dict[str, float]]
