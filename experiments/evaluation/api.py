"""Evaluation endpoints (/api/v1/evaluations, /compare-models, /compare-versions). Thin: parse →
service/selector → schema. Evaluations run on a worker: POST answers 202 with the queued record;
poll GET /evaluations/{id} for progress and the result."""

from __future__ import annotations

from ninja import Query, Router

from experiments.evaluation import selectors, services
from experiments.evaluation.schemas import (
    CompareModelsIn,
    CompareVersionsIn,
    EvaluateIn,
    EvaluationOut,
    ExamplesOut,
    ThresholdsOut,
)
from experiments.selectors import job_get
from t4dm_site.auth import trainer_auth

router = Router(tags=["evaluation"], auth=trainer_auth)


@router.post("/evaluations", response={202: EvaluationOut})
def evaluation_create(request, payload: EvaluateIn):
    """evaluate_model: a job's final model (job_id or model_path "job-001"), a checkpoint
    ("job-001/step-40"), a registered version ("model_id@1.0.0") or a folder, on a dataset split."""
    job = job_get(user=request.auth, job_id=payload.job_id) if payload.job_id else None
    evaluation = services.evaluation_start(
        owner=request.auth,
        model_path=payload.model_path,
        job=job,
        test_dataset=payload.test_dataset,
        split=payload.split,
        metrics=payload.metrics,
        base_model=payload.base_model,
        compare_to_base=payload.compare_to_base,
        max_samples=payload.max_samples,
        thresholds=payload.thresholds,
    )
    return 202, selectors.evaluation_to_dict(evaluation)


@router.get("/evaluations", response=list[EvaluationOut])
def evaluation_list(request, job_id: str | None = None):
    evaluations = selectors.evaluations_visible_to(request.auth)
    if job_id:
        evaluations = evaluations.filter(job=job_get(user=request.auth, job_id=job_id))
    return [selectors.evaluation_to_dict(e) for e in evaluations.defer("examples")[:200]]


@router.get("/evaluations/thresholds", response=ThresholdsOut)
def evaluation_thresholds(request):
    """The project's default quality thresholds (settings T4DM_QUALITY_THRESHOLDS)."""
    return {"thresholds": services.project_thresholds()}


@router.get("/evaluations/{evaluation_id}", response=EvaluationOut)
def evaluation_detail(request, evaluation_id: str):
    return selectors.evaluation_to_dict(
        selectors.evaluation_get(user=request.auth, evaluation_id=evaluation_id)
    )


@router.get("/evaluations/{evaluation_id}/examples", response=ExamplesOut)
def evaluation_examples(
    request,
    evaluation_id: str,
    sort: str | None = None,
    order: str = "worst",
    only: str = "all",
    q: str = "",
    offset: int = Query(0, ge=0),
    limit: int = Query(50, ge=1, le=500),
):
    """Per-example results, worst first by default; `only`: incorrect, correct, worse_than_base, ..."""
    evaluation = selectors.evaluation_get(user=request.auth, evaluation_id=evaluation_id)
    return selectors.evaluation_examples(
        evaluation=evaluation, sort=sort, order=order, only=only, query=q, offset=offset, limit=limit
    )


@router.post("/compare-models", response={202: EvaluationOut})
def compare_models(request, payload: CompareModelsIn):
    """compare_models: each model's output and scores per test case, plus aggregates (in `comparison`)."""
    evaluation = services.compare_models_start(
        owner=request.auth,
        models=payload.models,
        test_cases=payload.test_cases,
        test_dataset=payload.test_dataset,
        task_type=payload.task_type,
        metrics=payload.metrics,
        max_samples=payload.max_samples,
    )
    return 202, selectors.evaluation_to_dict(evaluation)


@router.post("/compare-versions", response={202: EvaluationOut})
def compare_versions(request, payload: CompareVersionsIn):
    """compare_versions: deltas (B − A) with paired bootstrap CIs and wins/losses/ties (in `comparison`)."""
    evaluation = services.compare_versions_start(
        owner=request.auth,
        version_a=payload.version_a,
        version_b=payload.version_b,
        test_dataset=payload.test_dataset,
        metrics=payload.metrics,
        resamples=payload.resamples,
        max_samples=payload.max_samples,
    )
    return 202, selectors.evaluation_to_dict(evaluation)
