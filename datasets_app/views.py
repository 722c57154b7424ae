"""Dataset pages: list with browser upload, detail with statistics, histograms, issues, preview,
versions and lineage. Thin: authorize, select, render."""

from __future__ import annotations

import json
from functools import wraps

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.http import Http404
from django.shortcuts import redirect, render
from django.urls import reverse

from datasets_app.augmentation import METHODS, MODEL_FREE
from datasets_app.models import TaskType
from datasets_app.selectors import (
    dataset_get,
    dataset_version_get,
    dataset_version_preview,
    dataset_versions,
    datasets_visible_to,
)
from datasets_app.sources import FORMATS
from t4dm_site.errors import DomainError, NotFound
from t4dm_site.roles import can_train

SEVERITY_ORDER = {"error": 0, "warning": 1, "info": 2}
KNOWLEDGE_TYPE_LABELS = [
    ("all", "everything"),
    ("concepts", "concepts → questions and answers"),
    ("procedures", "procedures → instructions"),
    ("facts", "facts → retrieval questions"),
]


def trainers_only(view):
    """Logged in, and a researcher or admin: datasets belong to the training side."""

    @login_required
    @wraps(view)
    def wrapped(request, *args, **kwargs):
        if not can_train(request.user):
            raise PermissionDenied("Datasets are for researchers and admins.")
        return view(request, *args, **kwargs)

    return wrapped


KNOWLEDGE_MAX_BYTES = 32 * 1024 * 1024  # as POST /api/v1/datasets/knowledge


@trainers_only
def dataset_list(request):
    if request.method == "POST":
        return _knowledge_import(request)
    datasets = datasets_visible_to(request.user).select_related("owner")[:200]
    return render(
        request,
        "datasets/list.html",
        {
            "datasets": datasets,
            "task_types": TaskType.choices,
            "formats": [f for f in FORMATS if f != "hf"],
            "knowledge_types": KNOWLEDGE_TYPE_LABELS,
        },
    )


def _knowledge_import(request):
    """The page's "Import a knowledge base" form: the same service as POST /api/v1/datasets/knowledge
    (an uploaded knowledge-base JSON, or the shipped example when no file is given); opens the new dataset."""
    from datasets_app.knowledge import KNOWLEDGE_TYPES
    from datasets_app.services import dataset_prepare_from_knowledge

    upload = request.FILES.get("knowledge_file")
    knowledge_type = request.POST.get("knowledge_type", "all")
    try:
        if upload is not None and upload.size > KNOWLEDGE_MAX_BYTES:
            raise DomainError(
                f"the knowledge base has {upload.size} bytes; the limit is {KNOWLEDGE_MAX_BYTES}"
            )
        version = dataset_prepare_from_knowledge(
            owner=request.user,
            content=upload.read() if upload is not None else None,
            knowledge_type=knowledge_type if knowledge_type in KNOWLEDGE_TYPES else "all",
            format="instruction" if request.POST.get("knowledge_format") == "instruction" else "chat",
            name=request.POST.get("knowledge_name", "").strip()[:200],
        )
    except DomainError as error:
        messages.error(request, f"The knowledge base was not imported: {error}")
        return redirect(reverse("dataset-list") + "#knowledge-import")
    messages.success(
        request,
        f"Imported {version.statistics.get('total_samples', '?')} samples from the knowledge base "
        f"as {version.dataset.public_id}.",
    )
    return redirect("dataset-detail", version.dataset.public_id)


@trainers_only
def dataset_detail(request, dataset_id: str):
    number = request.GET.get("version")
    split = request.GET.get("split", "train")
    try:
        dataset = dataset_get(user=request.user, dataset_id=dataset_id)
        version = dataset_version_get(
            user=request.user,
            dataset_id=dataset_id,
            number=int(number) if number and number.isdigit() else None,
        )
        preview = dataset_version_preview(
            version=version,
            split=split,
            page=_int(request.GET.get("page"), 1),
            q=request.GET.get("q", "")[:200],
        )
    except NotFound as exc:
        raise Http404(exc.message) from None
    rows = [{"number": n, "row": row} for n, row in zip(preview["numbers"], preview["rows"], strict=True)]
    issues = sorted(version.validation_issues, key=lambda i: SEVERITY_ORDER.get(i["severity"], 3))
    for issue in issues:
        if issue.get("split_row"):
            issue["page"] = (issue["split_row"] - 1) // preview["page_size"] + 1
    stats = version.statistics
    charts = {
        "tokens": stats.get("token_histogram", {}),
        "labels": stats.get("label_counts", {}),
    }
    return render(
        request,
        "datasets/detail.html",
        {
            "dataset": dataset,
            "version": version,
            "versions": dataset_versions(dataset=dataset),
            "stats": stats,
            "issues": issues,
            "preview": preview,
            "rows": rows,
            "splits": list(version.splits),
            "split": split,
            "charts": charts,
            "report_json": json.dumps(version.report, indent=2, ensure_ascii=False) if version.report else "",
            "changes": _changes(version.report or {}),
            "augment_methods": [
                (
                    method,
                    "needs no model" if method in MODEL_FREE else "needs a model configured in the settings",
                )
                for method in METHODS
            ],
        },
    )


def _int(value, default: int) -> int:
    return int(value) if value and str(value).isdigit() else default


def _label(key: str) -> str:
    return key.replace("_", " ")


def _plain(value) -> str:
    if isinstance(value, dict):
        return ", ".join(f"{_label(str(k))}: {_plain(v)}" for k, v in value.items()) or "—"
    if isinstance(value, list):
        return ", ".join(_plain(v) for v in value) or "—"
    if isinstance(value, bool):
        return "yes" if value else "no"
    return str(value)


def _changes(report: dict) -> dict:
    """A version's change report as a person reads it: counts as (what, how many) rows, rows per split
    before → after, and examples (before → after); anything else as label: value."""
    counts = report.get("changes") or report.get("added_rows") or {}
    before, after = report.get("rows_before") or {}, report.get("rows_after") or {}
    examples = []
    for kind, items in (report.get("examples") or {}).items():
        for item in items if isinstance(items, list) else []:
            if isinstance(item, dict):
                where = item.get("split", "")
                row = item.get("row") or item.get("source_row")
                examples.append(
                    {
                        "kind": _label(kind),
                        "where": f"{where} row {row}".strip() if row else where,
                        "before": _plain(item.get("before", "")),
                        "after": _plain(item.get("after", "")),
                    }
                )
    shown = {"changes", "added_rows", "rows_before", "rows_after", "examples"}
    return {
        "counts": [(_label(k), v) for k, v in counts.items()],
        "splits": [(s, before.get(s), after.get(s)) for s in before],
        "examples": examples[:50],
        "other": [(_label(k), _plain(v)) for k, v in report.items() if k not in shown],
    }
