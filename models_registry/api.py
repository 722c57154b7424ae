"""Model registry API (/api/v1/models/...). Thin: parse → service/selector → schema."""

from __future__ import annotations

import json
from pathlib import Path

from django.http import FileResponse
from ninja import Router

from experiments.selectors import job_get
from models_registry import selectors, services
from models_registry.models import ModelExport
from models_registry.schemas import (
    ExportIn,
    ExportOut,
    GateOut,
    ModelCardIn,
    ModelSummaryOut,
    RegisteredModelIn,
    RegisteredModelOut,
    SignoffIn,
    StageIn,
    VersionCreateIn,
    VersionDetailOut,
)
from t4dm_site.auth import trainer_auth
from t4dm_site.errors import InvalidInput, NotFound

router = Router(tags=["registry"], auth=trainer_auth)

# Every `{model_id}` below is in the caller's own namespace (model ids are per owner); another owner's
# model answers 404 like a missing one. Admins see every model and may add `?owner=<username>` where
# several owners use the same model_id.


def _detail(version) -> dict:
    return selectors.model_version_detail(version)


@router.get("", response=list[ModelSummaryOut])
def model_list(request):
    return selectors.models_overview(user=request.auth)


@router.post("/versions", response={201: VersionDetailOut})
def model_version_create(request, payload: VersionCreateIn):
    """Register a succeeded job's model as the next version (the auto_version rule picks the number).
    The version goes into the job owner's namespace: naming another owner's model_id creates (or adds
    to) the job owner's own model of that name, never the other owner's."""
    job = job_get(user=request.auth, job_id=payload.job_id)
    version = services.model_version_create(
        job=job, model_id=payload.model_id, created_by=request.auth.username
    )
    return 201, _detail(version)


@router.get("/{model_id}/versions", response=list[VersionDetailOut])
def model_version_list(request, model_id: str, owner: str | None = None):
    return [_detail(v) for v in selectors.model_versions(user=request.auth, model_id=model_id, owner=owner)]


@router.patch("/{model_id}", response=RegisteredModelOut)
def registered_model_update(request, model_id: str, payload: RegisteredModelIn, owner: str | None = None):
    registered = selectors.registered_model_get(user=request.auth, model_id=model_id, owner=owner)
    return services.registered_model_update(registered=registered, **payload.dict())


def _get(request, model_id: str, version: str, owner: str | None):
    return selectors.model_version_get(user=request.auth, model_id=model_id, version=version, owner=owner)


@router.get("/{model_id}/versions/{version}", response=VersionDetailOut)
def model_version_detail(request, model_id: str, version: str, owner: str | None = None):
    return _detail(_get(request, model_id, version, owner))


@router.get("/{model_id}/versions/{version}/metadata", response=dict)
def model_version_metadata(request, model_id: str, version: str, owner: str | None = None):
    """Everything a knowledge store keeps about a version, in one call: base model, approach, dataset
    version and its statistics, config, training metrics, evaluation results, stage, artifact paths."""
    from experiments.integrations.selectors import model_version_metadata as metadata

    return metadata(_get(request, model_id, version, owner))


@router.get("/{model_id}/versions/{version}/gate", response=GateOut)
def model_version_gate(
    request, model_id: str, version: str, thresholds: str | None = None, owner: str | None = None
):
    """The deployment gate as it stands; `thresholds` (JSON) add to the project's and the model's
    thresholds (the strictest applies: a request can tighten the gate, never loosen it)."""
    found = _get(request, model_id, version, owner)
    try:
        parsed = json.loads(thresholds) if thresholds else None
    except json.JSONDecodeError as exc:
        raise InvalidInput(f'thresholds must be JSON, e.g. {{"accuracy": 0.9}}: {exc}') from exc
    return selectors.gate_status(found, thresholds=parsed)


@router.post("/{model_id}/versions/{version}/stage", response=VersionDetailOut)
def model_version_stage(request, model_id: str, version: str, payload: StageIn, owner: str | None = None):
    """Move to a stage. Production: 409 `gate_failed` with `details.failing` unless the gate passes
    (or an admin overrides with a reason)."""
    found = _get(request, model_id, version, owner)
    services.model_version_transition(
        version=found,
        to_stage=payload.stage,
        actor=request.auth,
        reason=payload.reason,
        override=payload.override,
        thresholds=payload.thresholds,
    )
    return _detail(_get(request, model_id, version, owner))


@router.post("/{model_id}/versions/{version}/signoff", response={201: VersionDetailOut})
def model_version_signoff(request, model_id: str, version: str, payload: SignoffIn, owner: str | None = None):
    """Record that you reviewed the sample outputs (the gate's "Sample outputs reviewed")."""
    found = _get(request, model_id, version, owner)
    services.sample_review_signoff(version=found, reviewer=request.auth, note=payload.note)
    return 201, _detail(found)


@router.put("/{model_id}/versions/{version}/model-card", response=VersionDetailOut)
def model_version_card(request, model_id: str, version: str, payload: ModelCardIn, owner: str | None = None):
    """Replace the model card, or regenerate it from the records with `{"text": null}`."""
    found = _get(request, model_id, version, owner)
    return _detail(services.model_card_update(version=found, text=payload.text))


@router.post("/{model_id}/versions/{version}/exports", response={201: ExportOut})
def model_version_export(request, model_id: str, version: str, payload: ExportIn, owner: str | None = None):
    found = _get(request, model_id, version, owner)
    export = services.model_version_export(version=found, merge=payload.merge, actor=request.auth)
    return 201, next(
        e for e in selectors.model_version_detail(found)["exports"] if e["export_id"] == export.pk
    )


@router.get("/{model_id}/versions/{version}/exports/{export_id}/archive")
def model_version_export_archive(
    request, model_id: str, version: str, export_id: int, owner: str | None = None
):
    """The export folder as a .tar.gz."""
    found = _get(request, model_id, version, owner)
    export = ModelExport.objects.filter(pk=export_id, version=found).first()
    if export is None or not Path(export.archive_path).is_file():
        raise NotFound(f"export {export_id} of {found.ref} does not exist")
    path = Path(export.archive_path)
    return FileResponse(path.open("rb"), as_attachment=True, filename=path.name)
