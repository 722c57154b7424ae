from __future__ import annotations

import json

from django.db.models import QuerySet

from datasets_app import storage
from datasets_app.models import Dataset, DatasetTask, DatasetVersion
from t4dm_site.access import get_visible, visible
from t4dm_site.errors import NotFound

PREVIEW_PAGE_SIZE = 20


def datasets_visible_to(user) -> QuerySet[Dataset]:
    """Sharing rule: owners see their own datasets; admins see all."""
    return visible(Dataset.objects.prefetch_related("versions"), user)


def dataset_get(*, user, dataset_id: str) -> Dataset:
    return get_visible(Dataset.objects.prefetch_related("versions"), user, dataset_id, "dataset", prefix="ds")


def dataset_version_latest(*, user, dataset_id: str) -> DatasetVersion:
    version = dataset_get(user=user, dataset_id=dataset_id).latest_version
    if version is None:
        raise NotFound(f"dataset {dataset_id} does not exist")
    return version


def dataset_version_get(*, user, dataset_id: str, number: int | None = None) -> DatasetVersion:
    """A given version of a visible dataset, or its latest when number is None."""
    if number is None:
        return dataset_version_latest(user=user, dataset_id=dataset_id)
    version = dataset_get(user=user, dataset_id=dataset_id).versions.filter(number=number).first()
    if version is None:
        raise NotFound(f"dataset {dataset_id} has no version {number}")
    return version


def dataset_versions(*, dataset: Dataset) -> QuerySet[DatasetVersion]:
    return dataset.versions.select_related("parent").order_by("-number")


def dataset_version_preview(
    *,
    version: DatasetVersion,
    split: str,
    page: int = 1,
    page_size: int = PREVIEW_PAGE_SIZE,
    q: str = "",
) -> dict:
    """One page of a split's rows; with `q`, of the rows whose text contains it (case ignored).
    `numbers` are the rows' numbers in the split (1-based), so a match links to its place."""
    info = version.splits.get(split)
    if info is None:
        raise NotFound(f"{version} has no split {split!r}; it has {', '.join(version.splits)}")
    page = max(1, page)
    offset = (page - 1) * page_size
    q = (q or "").strip()
    if q:
        needle = q.casefold()
        everything, _ = storage.read_page(version.path, info["file"], offset=0, limit=10**9)
        matches = [
            (n, row)
            for n, row in enumerate(everything, start=1)
            if needle in json.dumps(row, ensure_ascii=False).casefold()
        ]
        total = len(matches)
        chosen = matches[offset : offset + page_size]
        rows, numbers = [row for _, row in chosen], [n for n, _ in chosen]
    else:
        rows, total = storage.read_page(version.path, info["file"], offset=offset, limit=page_size)
        numbers = list(range(offset + 1, offset + 1 + len(rows)))
    pages = max(1, -(-total // page_size))
    return {
        "split": split,
        "page": page,
        "pages": pages,
        "page_size": page_size,
        "total": total,
        "first_row": offset + 1,
        "rows": rows,
        "numbers": numbers,
        "q": q,
    }


def dataset_task_get(*, user, task_id: str) -> DatasetTask:
    tasks = DatasetTask.objects.select_related("source_version__dataset", "result_version")
    return get_visible(tasks, user, task_id, "dataset task", prefix="dstask")


def dataset_task_to_dict(task: DatasetTask) -> dict:
    """A dataset task as GET /api/v1/datasets/tasks/<id> and its live page show it (the API adds a
    prepare's full result)."""
    source, result = task.source_version, task.result_version
    dataset = source.dataset if source else (result.dataset if result else None)
    return {
        "task_id": task.public_id,
        "kind": task.kind,
        "dataset_id": dataset.public_id if dataset else None,
        "source_version": source.number if source else None,
        "status": task.status,
        "progress": task.progress,
        "message": task.message,
        "error": task.error,
        "error_details": task.error_details or {},
        "result_version": result.number if result else None,
    }
