"""Dataset pages: list with browser upload, detail with statistics, histograms, issues, preview,
versions and lineage. Thin: authorize, select, render."""

from __future__ import annotations

import json
from functools import wraps

from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.http import Http404
from django.shortcuts import render

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
from t4dm_site.errors import NotFound
from t4dm_site.roles import can_train

SEVERITY_ORDER = {"error": 0, "warning": 1, "info": 2}


def trainers_only(view):
    """Logged in, and a researcher or admin: datasets belong to the training side."""

    @login_required
    @wraps(view)
    def wrapped(request, *args, **kwargs):
        if not can_train(request.user):
            raise PermissionDenied("Datasets are for researchers and admins.")
        return view(request, *args, **kwargs)

    return wrapped


@trainers_only
def dataset_list(request):
    datasets = datasets_visible_to(request.user).select_related("owner")[:200]
    return render(
        request,
        "datasets/list.html",
        {"datasets": datasets, "task_types": TaskType.choices, "formats": [f for f in FORMATS if f != "hf"]},
    )


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
        preview = dataset_version_preview(version=version, split=split, page=_int(request.GET.get("page"), 1))
    except NotFound as exc:
        raise Http404(exc.message) from None
    first = preview["first_row"]
    rows = [{"number": first + i, "row": row} for i, row in enumerate(preview["rows"])]
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
