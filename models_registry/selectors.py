"""Registry reads: what a user may see, the seed's version schema, lineage, gate status, history."""

from __future__ import annotations

from urllib.parse import quote

from django.db.models import QuerySet

from models_registry.gates import gate_check, gate_failures, version_evaluation
from models_registry.models import ModelVersion, RegisteredModel
from models_registry.services import semver_key
from t4dm_site.access import visible
from t4dm_site.errors import Conflict, NotFound
from t4dm_site.roles import is_admin


def models_visible_to(user) -> QuerySet[RegisteredModel]:
    """Sharing rule: a registered model (and every version, gate, card, export of it) is its owner's;
    admins see all. Anyone else gets the same 404 as for a model that does not exist."""
    return visible(RegisteredModel.objects.select_related("owner"), user)


def versions_visible_to(user) -> QuerySet[ModelVersion]:
    queryset = ModelVersion.objects.select_related(
        "registered__owner", "dataset_version__dataset", "config", "job", "checkpoint", "evaluation"
    )
    return visible(queryset, user, owner_field="registered__owner")


def registered_model_get(*, user, model_id: str, owner: str | None = None) -> RegisteredModel:
    """The user's own `model_id`. An admin may name another owner (`owner=<username>`); without one, an
    admin gets their own model of that id, else the only one there is (409 when several owners have it)."""
    missing = NotFound(f"model {model_id} does not exist")
    if not is_admin(user):
        if owner and owner != user.username:
            raise missing
        found = RegisteredModel.objects.filter(owner=user, model_id=model_id).first()
        if found is None:
            raise missing
        return found
    candidates = models_visible_to(user).filter(model_id=model_id)
    if owner:
        candidates = candidates.filter(owner__username=owner)
    else:
        own = candidates.filter(owner=user).first()
        if own is not None:
            return own
    found = list(candidates[:20])
    if not found:
        raise missing
    if len(found) > 1:
        owners = sorted(getattr(m.owner, "username", "") for m in found)
        raise Conflict(
            f"model {model_id} exists for several owners ({', '.join(owners)}); add ?owner=<username>",
            code="ambiguous_model_id",
            details={"owners": owners},
        )
    return found[0]


def model_version_get(*, user, model_id: str, version: str, owner: str | None = None) -> ModelVersion:
    try:
        registered = registered_model_get(user=user, model_id=model_id, owner=owner)
    except NotFound:
        raise NotFound(f"model version {model_id}@{version} does not exist") from None
    found = versions_visible_to(user).filter(registered=registered, version=version).first()
    if found is None:
        raise NotFound(f"model version {model_id}@{version} does not exist")
    return found


def model_versions(*, user, model_id: str, owner: str | None = None) -> list[ModelVersion]:
    registered = registered_model_get(user=user, model_id=model_id, owner=owner)
    versions = list(versions_visible_to(user).filter(registered=registered))
    if not versions:
        raise NotFound(f"model {model_id} does not exist")
    return sorted(versions, key=lambda v: semver_key(v.version), reverse=True)


def owner_name(registered: RegisteredModel) -> str | None:
    return getattr(registered.owner, "username", None)


def models_overview(*, user) -> list[dict]:
    """One row per registered model the user sees: how many versions, the newest, which one is in
    production, and whose it is."""
    by_model: dict[int, list[ModelVersion]] = {}
    for version in versions_visible_to(user):
        by_model.setdefault(version.registered_id, []).append(version)
    registered = {m.pk: m for m in models_visible_to(user).filter(pk__in=by_model)}
    rows = []
    for pk, versions in by_model.items():
        model = registered[pk]
        newest = max(versions, key=lambda v: semver_key(v.version))
        production = next((v for v in versions if v.stage == "production"), None)
        rows.append(
            {
                "model_id": model.model_id,
                "owner": owner_name(model),
                "description": model.description,
                "versions": len(versions),
                "latest_version": newest.version,
                "base_model": newest.base_model,
                "production_version": production.version if production else None,
                "updated_at": max(v.created_at for v in versions).isoformat(),
            }
        )
    return sorted(rows, key=lambda row: (row["model_id"], row["owner"] or ""))


def model_version_schema(version: ModelVersion) -> dict:
    """The seed's version schema, field for field."""
    evaluation = version_evaluation(version)
    metrics = (evaluation.metrics if evaluation else None) or version.evaluation_metrics or {}
    dv = version.dataset_version
    return {
        "model_id": version.model_id,
        "version": version.version,
        "base_model": version.base_model,
        "training": {
            "dataset": dv.dataset.public_id if dv else None,
            "config": version.config.public_id if version.config else None,
            "final_loss": version.final_loss,
        },
        "evaluation": dict(metrics),
        "created_at": version.created_at.isoformat(),
        "created_by": version.created_by,
    }


def model_version_lineage(version: ModelVersion) -> list[dict]:
    """dataset → config → job → evaluation → version, each step with its id and a line of detail."""
    dv, config, job = version.dataset_version, version.config, version.job
    evaluation = version_evaluation(version)
    return [
        {
            "kind": "dataset",
            "id": f"{dv.dataset.public_id} v{dv.number}" if dv else None,
            "detail": f"{dv.dataset.name}: {dv.task_type}, validation {dv.validation_status}" if dv else "",
            "url": f"/datasets/{dv.dataset.public_id}/" if dv else None,
        },
        {
            "kind": "config",
            "id": config.public_id if config else None,
            "detail": f"{config.model_base}, {config.approach}" if config else "",
        },
        {
            "kind": "job",
            "id": job.public_id if job else None,
            "detail": (
                f"{job.status}, final loss {version.final_loss:.4g}"
                if version.final_loss is not None
                else job.status
            )
            if job
            else "",
            "url": f"/jobs/{job.public_id}/" if job else None,
        },
        {
            "kind": "checkpoint",
            "id": f"step {version.checkpoint.step}" if version.checkpoint else None,
            "detail": "best checkpoint" if version.checkpoint else "final model",
        },
        {
            "kind": "evaluation",
            "id": evaluation.public_id if evaluation else None,
            "detail": ", ".join(
                f"{k} {v:.4g}" if isinstance(v, float) else f"{k} {v}"
                for k, v in (evaluation.metrics or {}).items()
            )
            if evaluation
            else "",
            "url": f"/evaluations/{evaluation.public_id}/" if evaluation else None,
        },
        {"kind": "version", "id": version.ref, "detail": version.stage},
    ]


def stage_history(version: ModelVersion) -> list[dict]:
    return [
        {
            "from_stage": t.from_stage,
            "to_stage": t.to_stage,
            "who": t.actor_name,
            "when": t.created_at.isoformat(),
            "why": t.reason,
            "override": t.override,
            "failing": [item["key"] for item in gate_failures(t.gate)] if t.gate else [],
        }
        for t in version.transitions.all()
    ]


def gate_status(version: ModelVersion, *, thresholds: dict | None = None) -> dict:
    """The gate as it stands: `thresholds` (a request's) add to the project's and the model's."""
    items = gate_check(version=version, thresholds=thresholds)
    failing = gate_failures(items)
    return {"passed": not failing, "items": items, "failing": [item["key"] for item in failing]}


def model_version_detail(version: ModelVersion) -> dict:
    """The schema plus what the registry adds: stage, lineage, history, gate, exports, sign-offs."""
    owner = owner_name(version.registered)
    archive_query = f"?owner={quote(owner)}" if owner else ""
    return {
        **model_version_schema(version),
        "owner": owner,
        "stage": version.stage,
        "version_reason": version.version_reason,
        "provider": version.provider,
        "job_id": version.job.public_id if version.job else None,
        "evaluation_id": (version_evaluation(version).public_id if version_evaluation(version) else None),
        "artifact_path": version.artifact_path,
        "model_card": version.model_card,
        "lineage": model_version_lineage(version),
        "history": stage_history(version),
        "gate": gate_status(version),
        "signoffs": [
            {"reviewer": s.reviewer_name, "note": s.note, "when": s.created_at.isoformat()}
            for s in version.signoffs.all()
        ],
        "exports": [
            {
                "export_id": e.pk,
                "merged": e.merged,
                "status": e.status,
                "progress": e.progress,
                "message": e.message,
                "error": e.error,
                "path": e.path,
                "files": len(e.manifest.get("files", {})),
                "created_at": e.created_at.isoformat(),
                "download_url": f"/api/v1/models/{version.model_id}/versions/{version.version}/exports/{e.pk}/archive"
                + archive_query,
            }
            for e in version.exports.all()
        ],
    }


def playground_targets(version: ModelVersion, *, user) -> dict:
    """What the playground can run for a version: its final folder, its checkpoints, its base. Each goes
    through the model resolver for ``user`` (experiments.model_refs): a folder that is not the job's own
    or a base the user may not use has nothing to run (None)."""
    from experiments.model_refs import base_model_or_none, job_path_or_none

    base = version.config.model_base if version.config else version.base_model
    job = version.job
    checkpoints = {c.step: job_path_or_none(job, c.path) for c in job.checkpoints.all()} if job else {}
    return {
        "version": job_path_or_none(job, version.artifact_path),
        "base": base,
        "base_path": base_model_or_none(user=user, name=base),
        "checkpoints": {step: path for step, path in checkpoints.items() if path},
    }
