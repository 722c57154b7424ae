"""Workflows (/api/v1/workflows). Thin: parse → service/selector → JSON."""

from __future__ import annotations

import json
from typing import Any, Literal

from ninja import File, Form, Router, Schema
from ninja.files import UploadedFile

from experiments.workflows import selectors, services
from t4dm_site.auth import trainer_auth
from t4dm_site.errors import InvalidInput

router = Router(tags=["workflows"], auth=trainer_auth)


class KnowledgeIn(Schema):
    knowledge_type: str = "all"
    format: str = "chat"
    phrasings: int = 3


class EvaluationOptionsIn(Schema):
    max_samples: int | None = None
    metrics: list[str] | None = None


class WorkflowIn(Schema):
    name: str = ""
    source: Literal["knowledge", "dataset"] = "knowledge"
    dataset_id: str | None = None
    knowledge: KnowledgeIn | None = None
    model_base: str
    approach: str | None = None
    template: str | None = None
    hyperparams: dict[str, Any] | None = None
    checkpointing: dict[str, Any] | None = None
    early_stopping: dict[str, Any] | None = None
    evaluation: EvaluationOptionsIn | None = None
    model_id: str | None = None
    promote_to: str | None = None


class RetryIn(Schema):
    hyperparams: dict[str, Any] | None = None


def _spec(payload: WorkflowIn) -> dict:
    spec = payload.dict(exclude_none=True)
    spec.pop("name", None)
    return spec


@router.post("", response={201: dict})
def workflow_create(request, payload: WorkflowIn):
    """Run the whole chain from a knowledge-base export (`source: knowledge`, the shipped example; upload
    your own with POST /workflows/upload) or an existing dataset version (`source: dataset`,
    `dataset_id: ds-001` or `ds-001@v2`: prepare and validate are skipped)."""
    workflow = services.workflow_create(owner=request.auth, spec=_spec(payload), name=payload.name)
    return 201, selectors.workflow_to_dict(workflow)


def _json_form(value: str, name: str) -> Any:
    if not value.strip():
        return None
    try:
        return json.loads(value)
    except json.JSONDecodeError as exc:
        raise InvalidInput(f"{name}: not valid JSON ({exc.msg})") from None


@router.post("/upload", response={201: dict})
def workflow_create_upload(
    request,
    file: UploadedFile = File(...),
    source: str = Form("file", description="file (a dataset file) or knowledge (a knowledge-base export)"),
    name: str = Form(""),
    task_type: str = Form("chat"),
    format: str = Form("jsonl"),
    model_base: str = Form(...),
    approach: str = Form(""),
    template: str = Form(""),
    hyperparams: str = Form("", description="JSON object"),
    checkpointing: str = Form("", description="JSON object"),
    evaluation: str = Form("", description='JSON object, e.g. {"max_samples": 50}'),
    model_id: str = Form(""),
    promote_to: str = Form(""),
):
    """The same as POST /workflows with an uploaded dataset file or knowledge-base export."""
    if source not in ("file", "knowledge"):
        raise InvalidInput("source: with an upload, choose file or knowledge")
    spec = {
        "source": source,
        "task_type": task_type,
        "format": format,
        "model_base": model_base,
        "approach": approach or None,
        "template": template or None,
        "hyperparams": _json_form(hyperparams, "hyperparams"),
        "checkpointing": _json_form(checkpointing, "checkpointing"),
        "evaluation": _json_form(evaluation, "evaluation"),
        "model_id": model_id or None,
        "promote_to": promote_to or None,
    }
    for key in ("hyperparams", "checkpointing", "evaluation"):
        if spec[key] is not None and not isinstance(spec[key], dict):
            raise InvalidInput(f"{key}: must be a JSON object")
    workflow = services.workflow_create(
        owner=request.auth,
        spec={k: v for k, v in spec.items() if v is not None},
        upload=file.read(),
        upload_name=file.name or "",
        name=name,
    )
    return 201, selectors.workflow_to_dict(workflow)


@router.post("/demo", response={201: dict})
def workflow_demo(request):
    """The seed's example workflow on the shipped knowledge base and the tiny model (minutes on a CPU)."""
    return 201, selectors.workflow_to_dict(services.workflow_demo_start(owner=request.auth))


@router.get("", response=list[dict])
def workflow_list(request):
    return [selectors.workflow_to_dict(w) for w in selectors.workflows_visible_to(request.auth)[:100]]


@router.get("/{workflow_id}", response=dict)
def workflow_detail(request, workflow_id: str):
    return selectors.workflow_to_dict(selectors.workflow_get(user=request.auth, workflow_id=workflow_id))


@router.post("/{workflow_id}/retry", response=dict)
def workflow_retry(request, workflow_id: str, payload: RetryIn | None = None):
    """Re-run a failed workflow from its failed step; optional hyperparameter overrides."""
    workflow = selectors.workflow_get(user=request.auth, workflow_id=workflow_id)
    services.workflow_retry(workflow=workflow, hyperparams=payload.hyperparams if payload else None)
    return selectors.workflow_to_dict(selectors.workflow_get(user=request.auth, workflow_id=workflow_id))
