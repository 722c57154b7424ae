"""Workflow pages: the list with a start form and the demo button, and one workflow's pipeline (its
script polls GET /api/v1/workflows/<id> every second while it runs). Thin: authorize, call, render."""

from __future__ import annotations

from django.http import Http404
from django.shortcuts import redirect, render
from django.views.decorators.http import require_POST

from datasets_app.selectors import datasets_visible_to
from experiments.models import Approach
from experiments.selectors import loadable_bases
from experiments.services import LOCAL_APPROACHES, TEMPLATES
from experiments.workflows import selectors, services
from t4dm_site.errors import DomainError, NotFound
from t4dm_site.pages import dashboard


def _form_context(request, *, values: dict | None = None, error: str | None = None) -> dict:
    datasets = []
    for ds in datasets_visible_to(request.user):
        version = ds.latest_version
        if version is not None:
            datasets.append(
                {"id": f"{ds.public_id}@v{version.number}", "name": ds.name, "task_type": ds.task_type}
            )
    return {
        "workflows": list(selectors.workflows_visible_to(request.user)[:50]),
        "datasets": datasets,
        "approaches": [(v, label) for v, label in Approach.choices if v in LOCAL_APPROACHES],
        "templates": list(TEMPLATES),
        "model_bases": [c["ref"] for c in loadable_bases(request.user)],
        "demo_hyperparams": services.DEMO_HYPERPARAMETERS,
        "values": values or {},
        "error": error,
    }


def _number(value: str, cast):
    value = (value or "").strip()
    if not value:
        return None
    try:
        return cast(value)
    except ValueError:
        raise DomainError(f"{value!r} is not a number") from None


@dashboard
def workflow_list(request):
    if request.method != "POST":
        return render(request, "workflows/list.html", _form_context(request))
    data = request.POST
    try:
        hyperparams = {
            k: v
            for k, v in {
                "learning_rate": _number(data.get("learning_rate"), float),
                "epochs": _number(data.get("epochs"), float),
                "max_steps": _number(data.get("max_steps"), int),
            }.items()
            if v is not None
        }
        spec = {
            "source": data.get("source", "knowledge"),
            "dataset_id": data.get("dataset_id") or None,
            "task_type": data.get("task_type") or "chat",
            "format": data.get("format") or "jsonl",
            "model_base": data.get("model_base", "").strip(),
            "approach": data.get("approach") or None,
            "template": data.get("template") or None,
            "hyperparams": hyperparams or None,
            "promote_to": data.get("promote_to") or None,
        }
        upload = request.FILES.get("file")
        workflow = services.workflow_create(
            owner=request.user,
            spec={k: v for k, v in spec.items() if v is not None},
            upload=upload.read() if upload else None,
            upload_name=upload.name if upload else "",
            name=data.get("name", ""),
        )
    except DomainError as exc:
        context = _form_context(request, values=data.dict(), error=exc.message)
        return render(request, "workflows/list.html", context, status=exc.status)
    return redirect("workflow-detail", workflow_id=workflow.public_id)


@dashboard
@require_POST
def workflow_demo(request):
    workflow = services.workflow_demo_start(owner=request.user)
    return redirect("workflow-detail", workflow_id=workflow.public_id)


@dashboard
def workflow_detail(request, workflow_id: str):
    try:
        workflow = selectors.workflow_get(user=request.user, workflow_id=workflow_id)
    except NotFound as exc:
        raise Http404(str(exc)) from None
    data = selectors.workflow_to_dict(workflow)
    return render(
        request,
        "workflows/detail.html",
        {"workflow": workflow, "data": data},
    )


@dashboard
@require_POST
def workflow_retry(request, workflow_id: str):
    try:
        workflow = selectors.workflow_get(user=request.user, workflow_id=workflow_id)
    except NotFound as exc:
        raise Http404(str(exc)) from None
    try:
        services.workflow_retry(workflow=workflow)
    except DomainError:
        pass  # the page shows the workflow as it stands (e.g. already retried)
    return redirect("workflow-detail", workflow_id=workflow.public_id)
