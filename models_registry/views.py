"""Registry pages: models list, a model's versions, a version's detail (lineage, gate, history,
stage actions, sign-off, export). Thin: authorize, select or call a service, render or redirect.

Same sharing rule as the API: a model is its owner's (404 for anyone else, as for a missing one);
admins see all and reach another owner's model with `?owner=<username>`."""

from __future__ import annotations

import html
from datetime import datetime
from pathlib import Path
from urllib.parse import urlencode

import markdown
import nh3
from django.conf import settings
from django.contrib import messages
from django.http import FileResponse, Http404, HttpResponseRedirect
from django.shortcuts import redirect, render
from django.urls import reverse
from django.views.decorators.http import require_POST

from models_registry import selectors, services
from models_registry.models import ModelExport, Stage
from models_registry.services import TRANSITIONS, GateFailed
from t4dm_site.errors import Conflict, DomainError, NotFound
from t4dm_site.pages import dashboard
from t4dm_site.roles import is_admin

STAGE_LABELS = {"none": "Unstaged", "staging": "Staging", "production": "Production", "archived": "Archived"}
CARD_TAGS = {"p", "br", "pre", "code", "em", "strong", "ul", "ol", "li", "blockquote", "h1", "h2", "h3",
             "h4", "h5", "h6", "table", "thead", "tbody", "tr", "th", "td", "hr", "a"}  # fmt: skip


def card_html(text: str) -> str:
    """A model card (Markdown) as safe HTML: any HTML in it is escaped first, then an allow-list."""
    rendered = markdown.markdown(html.escape(text or "", quote=False), extensions=["fenced_code", "tables"])
    return nh3.clean(rendered, tags=CARD_TAGS, attributes={"a": {"href"}}, url_schemes={"http", "https"})


def _when(value):
    """The selectors' ISO strings as datetimes, so every date on the page goes through one format."""
    try:
        return datetime.fromisoformat(value) if isinstance(value, str) else value
    except ValueError:
        return None


def _owner(request) -> str | None:
    return request.GET.get("owner") or None


def _owner_query(request, owner: str | None) -> str:
    """`?owner=<username>` for links to a model that is not the viewer's own (an admin's view)."""
    return "" if owner is None or owner == request.user.username else "?" + urlencode({"owner": owner})


def _back(request, name: str, **kwargs):
    owner = _owner(request)
    query = "?" + urlencode({"owner": owner}) if owner else ""
    return HttpResponseRedirect(reverse(name, kwargs=kwargs) + query)


def _version_or_404(request, model_id: str, version: str):
    try:
        return selectors.model_version_get(
            user=request.user, model_id=model_id, version=version, owner=_owner(request)
        )
    except (NotFound, Conflict) as exc:
        raise Http404(exc.message) from exc


@dashboard
def model_list(request):
    rows = selectors.models_overview(user=request.user)
    for row in rows:
        row["oq"] = _owner_query(request, row["owner"])
        row["updated"] = _when(row.get("updated_at"))
    return render(
        request,
        "registry/models_list.html",
        {"models": rows, "show_owner": is_admin(request.user)},
    )


@dashboard
def model_detail(request, model_id: str):
    try:
        versions = selectors.model_versions(user=request.user, model_id=model_id, owner=_owner(request))
    except (NotFound, Conflict) as exc:
        raise Http404(exc.message) from exc
    for one in versions:
        one.stage_label = STAGE_LABELS.get(one.stage, one.stage)
    owner = selectors.owner_name(versions[0].registered)
    return render(
        request,
        "registry/model_detail.html",
        {
            "model_id": model_id,
            "versions": versions,
            "owner": owner,
            "oq": _owner_query(request, owner),
        },
    )


@dashboard
def version_detail(request, model_id: str, version: str):
    found = _version_or_404(request, model_id, version)
    detail = selectors.model_version_detail(found)
    for h, transition in zip(detail["history"], found.transitions.all(), strict=False):
        h["when_at"] = _when(h.get("when"))
        # the four-eyes record of a production promotion: who signed off and who promoted
        four_eyes = [i for i in transition.gate or [] if i.get("key") == "second_person_signoff"]
        h["four_eyes"] = four_eyes[0].get("detail", "") if four_eyes else ""
        # the first row registers the version: it came from nowhere, not from "Unstaged"
        registered = h["from_stage"] == h["to_stage"]
        h["from_label"] = "—" if registered else STAGE_LABELS.get(h["from_stage"], h["from_stage"])
        h["to_label"] = STAGE_LABELS.get(h["to_stage"], h["to_stage"])
    for e in detail["exports"]:
        e["created"] = _when(e.get("created_at"))
    for signoff in detail["signoffs"]:
        signoff["when_at"] = _when(signoff.get("when"))
    for e in detail["exports"]:
        e["percent"] = round(100 * (e.get("progress") or 0))
    return render(
        request,
        "registry/version_detail.html",
        {
            "v": found,
            "oq": _owner_query(request, selectors.owner_name(found.registered)),
            "detail": detail,
            "record": _version_record(found),
            "exports_busy": any(e["status"] in ("queued", "running") for e in detail["exports"]),
            "stage_label": STAGE_LABELS.get(found.stage, found.stage),
            "card_html": card_html(found.model_card),
            "next_stages": sorted(TRANSITIONS[found.stage]),
            "stage_labels": STAGE_LABELS,
            "is_admin": is_admin(request.user),
            "production": Stage.PRODUCTION,
            "promotion_people": settings.PROMOTION_PEOPLE,
        },
    )


def _metric_text(metrics: dict) -> str:
    return ", ".join(
        f"{k} {v:.4g}" if isinstance(v, float) else f"{k} {v}" for k, v in (metrics or {}).items()
    )


def _plain(value) -> str:
    """A hyperparameter's value in words: lists as "a, b", mappings as "key a, key b"."""
    if isinstance(value, dict):
        return ", ".join(f"{k} {_plain(v)}" for k, v in value.items()) or "—"
    if isinstance(value, list | tuple):
        return ", ".join(_plain(v) for v in value) or "—"
    if value is None:
        return "—"
    return str(value)


def _version_record(found) -> dict:
    """The version record for people: what it was trained from (base model, dataset version, config
    and its hyperparameters, job), how it was evaluated (links), who registered it and when. The API
    keeps the seed's JSON schema (GET /api/v1/models/<id>/versions/<v>)."""
    from experiments.evaluation.views import kind_label
    from experiments.models import Evaluation

    dv, config, job = found.dataset_version, found.config, found.job
    refs = {found.ref, _owned_ref(found.registered, found.ref)}
    evaluations = Evaluation.objects.filter(model_path__in=refs)
    if job is not None:
        evaluations = evaluations | Evaluation.objects.filter(job=job)
    hyper = (config.hyperparameters or {}) if config else {}
    return {
        "base_model": found.base_model or (config.model_base if config else ""),
        "dataset": {
            "name": dv.dataset.name,
            "id": dv.dataset.public_id,
            "number": dv.number,
            "url": f"/datasets/{dv.dataset.public_id}/?version={dv.number}",
        }
        if dv
        else None,
        "job": {"id": job.public_id, "status": job.status, "url": f"/jobs/{job.public_id}/"} if job else None,
        "config": {
            "id": config.public_id,
            "approach": config.approach,
            "task_type": config.task_type,
            "hyperparameters": [
                {"name": name, "value": _plain(value)} for name, value in sorted(hyper.items())
            ],
        }
        if config
        else None,
        "checkpoint": found.checkpoint.step if found.checkpoint_id else None,
        "final_loss": found.final_loss,
        "evaluations": [
            {
                "id": e.public_id,
                "label": kind_label(e),
                "status": e.status,
                "metrics": _metric_text(e.metrics),
                "when": e.created_at,
                "url": f"/evaluations/{e.public_id}/",
            }
            for e in evaluations.distinct().order_by("-created_at")[:20]
        ],
        "version_metrics": _metric_text(found.evaluation_metrics or {}),
        "created_by": found.created_by,
        "created_at": found.created_at,
    }


@dashboard
def playground(request, model_id: str, version: str):
    found = _version_or_404(request, model_id, version)
    targets = selectors.playground_targets(found, user=request.user)
    return render(
        request,
        "registry/playground.html",
        {
            "v": found,
            "base": targets["base"],
            "oq": _owner_query(request, selectors.owner_name(found.registered)),
        },
    )


@require_POST
@dashboard
def version_stage(request, model_id: str, version: str):
    found = _version_or_404(request, model_id, version)
    stage = request.POST.get("stage", "")
    try:
        services.model_version_transition(
            version=found,
            to_stage=stage,
            actor=request.user,
            reason=request.POST.get("reason", ""),
            override=request.POST.get("override") == "on",
        )
        messages.success(request, f"{found.ref} moved to {stage}.")
    except GateFailed as exc:
        failing = ", ".join(item["label"] for item in exc.details["failing"])
        messages.error(request, f"Promotion to production refused. Failing checks: {failing}.")
    except DomainError as exc:
        messages.error(request, exc.message)
    return _back(request, "registry-version", model_id=model_id, version=version)


def _owned_ref(registered, ref: str) -> str:
    """`owner/model_id@version`: the reference names the model's owner, so an admin's Evaluate or
    Compare acts on the version shown even when the admin has a model of the same id."""
    owner = selectors.owner_name(registered)
    return f"{owner}/{ref}" if owner else ref


@require_POST
@dashboard
def versions_compare(request, model_id: str):
    """compare_versions (the evaluation engine) on two versions of this model; shows its evaluation page."""
    from experiments.evaluation.services import compare_versions_start

    try:  # the model must be one the user sees (404 otherwise, as for every registry page)
        registered = selectors.registered_model_get(
            user=request.user, model_id=model_id, owner=_owner(request)
        )
    except (NotFound, Conflict) as exc:
        raise Http404(exc.message) from exc
    try:
        evaluation = compare_versions_start(
            owner=request.user,
            version_a=_owned_ref(registered, f"{model_id}@{request.POST.get('version_a', '')}"),
            version_b=_owned_ref(registered, f"{model_id}@{request.POST.get('version_b', '')}"),
        )
    except DomainError as exc:
        messages.error(request, exc.message)
        return _back(request, "registry-model", model_id=model_id)
    return redirect("evaluation-detail", evaluation_id=evaluation.public_id)


@require_POST
@dashboard
def version_evaluate(request, model_id: str, version: str):
    """evaluate_model on this version, compared to its base; the gate reads the result."""
    from experiments.evaluation.services import evaluation_start

    found = _version_or_404(request, model_id, version)
    try:
        evaluation = evaluation_start(
            owner=request.user, model_path=_owned_ref(found.registered, found.ref), compare_to_base=True
        )
    except DomainError as exc:
        messages.error(request, exc.message)
        return _back(request, "registry-version", model_id=model_id, version=version)
    return redirect("evaluation-detail", evaluation_id=evaluation.public_id)


@require_POST
@dashboard
def version_signoff(request, model_id: str, version: str):
    found = _version_or_404(request, model_id, version)
    try:
        services.sample_review_signoff(
            version=found, reviewer=request.user, note=request.POST.get("note", "")
        )
        messages.success(request, "Sample-output review recorded.")
    except DomainError as exc:
        messages.error(request, exc.message)
    return _back(request, "registry-version", model_id=model_id, version=version)


@require_POST
@dashboard
def version_export(request, model_id: str, version: str):
    """Queues the export (a worker merges and packs it) and comes straight back: the page follows it."""
    found = _version_or_404(request, model_id, version)
    try:
        services.model_version_export_start(
            version=found, merge=request.POST.get("merge") == "on", actor=request.user
        )
        messages.success(request, "Export started: it is shown below as it runs.")
    except DomainError as exc:
        messages.error(request, exc.message)
    return HttpResponseRedirect(
        reverse("registry-version", kwargs={"model_id": model_id, "version": version})
        + ("?" + urlencode({"owner": _owner(request)}) if _owner(request) else "")
        + "#exports"
    )


@dashboard
def export_download(request, model_id: str, version: str, export_id: int):
    found = _version_or_404(request, model_id, version)
    export = ModelExport.objects.filter(pk=export_id, version=found, status="succeeded").first()
    if export is None or not export.archive_path or not Path(export.archive_path).is_file():
        raise Http404("no such export")
    path = Path(export.archive_path)
    return FileResponse(path.open("rb"), as_attachment=True, filename=path.name)
