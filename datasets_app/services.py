"""Dataset services: prepare, validate, clean, augment and import from a knowledge base.

Every service that creates a version goes through `_store_version`: files are written to a staging
folder first and moved into place inside the transaction that creates the record, so a failure leaves
neither a record pointing at nothing nor files without a record.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import shutil
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np
from django.conf import settings
from django.db import transaction
from django.db.models import Max

from datasets_app import pipeline, storage
from datasets_app.issues import ERROR, IssueLog
from datasets_app.models import (
    Dataset,
    DatasetTask,
    DatasetVersion,
    TaskType,
    VersionOrigin,
)
from datasets_app.sources import FORMATS, RawRow, check_name, read_rows, resolve_import_path
from datasets_app.tokens import TINY_MODEL_NAME, load_tokenizer, model_max_length
from t4dm_site.errors import Conflict, InvalidInput
from t4dm_site.events import DatasetTaskChanged, publish

DEFAULT_SPLIT = pipeline.DEFAULT_FRACTIONS
SPLITS = pipeline.SPLITS
EXTENSION_FORMATS = {
    ".jsonl": "jsonl",
    ".json": "json",
    ".csv": "csv",
    ".parquet": "parquet",
    ".txt": "jsonl",
}


def format_for(name: str | None, format: str | None) -> str:
    """The format given, or else the one the file name's extension names (.jsonl, .json, .csv,
    .parquet; .txt is read as JSON lines), or else jsonl. A folder path is read as hf by `_open_source`."""
    if format:
        return format
    return EXTENSION_FORMATS.get(Path(name or "").suffix.lower(), "jsonl")


def _check_task_type(task_type: str) -> None:
    if task_type not in TaskType.values:
        raise InvalidInput(
            f"unknown task_type {task_type!r}; choose one of {', '.join(TaskType.values)}",
            code="unknown_task_type",
        )


@dataclass
class Analysis:
    collected: pipeline.Collected
    split_of: np.ndarray | None
    statistics: dict
    status: str
    issues: list[dict]
    summary: dict


def _analyse(
    items,
    *,
    task_type: str,
    base_model: str | None,
    schema: dict | None,
    fractions: dict[str, float] | None,
    seed: int,
    split_of: np.ndarray | None = None,
    do_split: bool = True,
    raise_on_error: bool = True,
) -> Analysis:
    tokenizer = load_tokenizer(base_model)
    max_length = model_max_length(base_model)
    issues = IssueLog()
    collected = pipeline.collect(
        items, task_type=task_type, tokenizer=tokenizer, schema=schema, issues=issues
    )
    if raise_on_error and issues.error_count:
        raise _refusal(issues)
    if collected.n == 0 and raise_on_error:
        raise InvalidInput("the file holds no rows", code="empty_dataset")
    if split_of is None and do_split and collected.n:
        split_of = pipeline.split_assignment(
            collected.n,
            fractions or DEFAULT_SPLIT,
            seed,
            collected.labels if task_type == "classification" else None,
        )
    pipeline.dataset_checks(collected, split_of=split_of, max_length=max_length, fractions=fractions)
    stats = pipeline.statistics(
        collected, split_of, max_length=max_length, tokenizer_name=base_model or TINY_MODEL_NAME
    )
    severities = {"error": 0, "warning": 0, "info": 0}
    for code, count in issues.counts.items():
        severities[issues.severity_of[code]] += count
    summary = {**severities, "by_code": issues.summary()}
    return Analysis(collected, split_of, stats, issues.status(), issues.to_list(), summary)


REFUSAL_ISSUES_LISTED = 5000  # every error of a refused file, up to this many, is in details.issues


def _refusal(issues: IssueLog) -> InvalidInput:
    first = issues.first_error() or {}
    listed = issues.to_list()
    for issue in listed:
        issue.pop("index", None)
    more = issues.error_count - 1
    message = first.get("message", "the dataset has errors")
    if more > 0:
        message += f" (and {more} more error{'s' if more > 1 else ''}: see details)"
    return InvalidInput(
        message,
        code=first.get("code", "invalid_row"),
        details={
            "line": first.get("line"),
            "row": first.get("row"),
            "error_count": issues.error_count,
            "issues": [i for i in listed if i["severity"] == ERROR][:REFUSAL_ISSUES_LISTED],
        },
    )


def _open_source(
    content: bytes | BinaryIO | None, source_path: str | None, format: str
) -> tuple[Any, str, str]:
    """(readable source, format, content hash)."""
    if (content is None) == (source_path is None):
        raise InvalidInput(
            "give exactly one source: an uploaded file or a path under the import root", code="no_source"
        )
    if isinstance(content, bytes | bytearray):
        return io.BytesIO(content), format, storage.content_hash_of_bytes(content)
    if content is not None:  # an uploaded file (Django spools large ones to disk): read it as a stream
        return content, format, storage.content_hash_of_stream(content)
    path = resolve_import_path(source_path)
    if path.is_dir():
        format = "hf"
    return path, format, storage.content_hash_of_path(path)


def dataset_prepare(
    *,
    owner,
    name: str,
    content: bytes | BinaryIO | None = None,
    task_type: str = TaskType.CHAT,
    format: str = "jsonl",
    seed: int = 42,
    source_path: str | None = None,
    split: dict[str, float] | None = None,
    base_model: str | None = None,
    schema: dict | None = None,
    description: str = "",
    origin: str | None = None,
    report: dict | None = None,
    validation_content: bytes | None = None,
    reuse_same_content: bool = True,
) -> DatasetVersion:
    """prepare_dataset: parse, check, measure, split and store rows as a new dataset version.

    Sources: uploaded bytes or a file/`save_to_disk` folder under settings.IMPORT_ROOT. The same
    content (format and split) from the same owner is recognised by its hash and returns the
    existing version, unless `reuse_same_content` is False (the upload page's default): then it is a new
    dataset with the name given. `content` is bytes or a binary file object (an upload, read as a stream).
    Rows with errors refuse the whole file with the first error's line/row; nothing is stored.
    `validation_content` (JSONL): a separate validation file; then `content` is all train, these rows
    all validation, and there is no test split (what OpenAI's `validation_file` means).
    """
    _check_task_type(task_type)
    check_name(name or "", "dataset name")
    if format not in FORMATS:
        raise InvalidInput(
            f"unknown format {format!r}; choose one of {', '.join(FORMATS)}", code="unknown_format"
        )
    fractions = pipeline.parse_fractions(split)
    split_of = None
    if validation_content is not None:
        content, split_of, fractions = _with_validation_file(content, validation_content, format)
    source, format, content_hash = _open_source(content, source_path, format)
    existing = (
        reuse_same_content
        and DatasetVersion.objects.filter(
            content_hash=content_hash,
            dataset__owner=owner,
            format=format,
            task_type=task_type,
            seed=seed,
            split_fractions=fractions,
        ).first()
    )
    if existing:
        existing.reused = True  # the answer says so: identical content was already stored
        return existing
    analysis = _analyse(
        read_rows(source, format),
        task_type=task_type,
        base_model=base_model,
        schema=schema,
        fractions=fractions,
        seed=seed,
        split_of=split_of,
    )
    return _store_version(
        dataset=None,
        owner=owner,
        name=name or "dataset",
        description=description,
        analysis=analysis,
        content_hash=content_hash,
        format=format,
        task_type=task_type,
        seed=seed,
        fractions=fractions,
        origin=origin or (VersionOrigin.IMPORT if source_path else VersionOrigin.UPLOAD),
        source=source_path or name,
        base_model=base_model,
        report=report or {},
    )


# --- prepare on the dataset worker ------------------------------------------------------------------

DEFAULT_SYNC_PREPARE_BYTES = 1024 * 1024


def sync_prepare_bytes() -> int:
    """Sources up to this size are prepared in the web request (201 at once); larger ones on the dataset
    worker (202 and a task). Setting SYNC_PREPARE_BYTES, else env T4DM_SYNC_PREPARE_BYTES; default 1 MiB
    (preparing costs a multiple of the file's size in memory: that multiple stays out of the web
    process). 0 sends every upload and import to the worker."""
    value = getattr(settings, "SYNC_PREPARE_BYTES", None)
    if value is None:
        value = os.environ.get("T4DM_SYNC_PREPARE_BYTES", "") or DEFAULT_SYNC_PREPARE_BYTES
    try:
        return max(0, int(value))
    except (TypeError, ValueError):
        return DEFAULT_SYNC_PREPARE_BYTES


def _source_size(upload, source_path: str | None) -> int:
    if upload is not None:
        size = getattr(upload, "size", None)
        if size is None:  # a plain file object: measure it without reading it
            position = upload.tell()
            size = upload.seek(0, io.SEEK_END)
            upload.seek(position)
        return int(size)
    path = resolve_import_path(source_path or "")
    if path.is_dir():
        return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())
    return path.stat().st_size


def _uploads_folder() -> Path:
    folder = storage.datasets_root() / ".uploads"
    folder.mkdir(mode=0o700, parents=True, exist_ok=True)
    return folder


def _keep_upload(upload) -> Path:
    """Copy the request's upload (Django's spool file) to a private file the dataset worker reads; in
    1 MiB chunks, so the web process never holds it."""
    target = _uploads_folder() / uuid.uuid4().hex
    descriptor = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(descriptor, "wb") as out:
            upload.seek(0)
            shutil.copyfileobj(upload, out, 1 << 20)
    except BaseException:
        target.unlink(missing_ok=True)
        raise
    return target


# Public for /v1/files (experiments.openai_compat), which keeps its uploads the same way.
keep_upload = _keep_upload


def dataset_prepare_request(
    *,
    owner,
    name: str,
    upload: BinaryIO | None = None,
    source_path: str | None = None,
    task_type: str = TaskType.CHAT,
    format: str = "jsonl",
    seed: int = 42,
    split: dict[str, float] | None = None,
    base_model: str | None = None,
    schema: dict | None = None,
    file_name: str | None = None,
    reuse_same_content: bool = True,
) -> DatasetVersion | DatasetTask:
    """prepare_dataset from the API and the pages: a source up to `sync_prepare_bytes()` is prepared now
    (→ the version); a larger one is stored and queued on the datasets queue (→ a "prepare" task to
    poll, whose result names the new version). The arguments are checked now either way, so a wrong
    task type, format, name or split is refused at once; the rows are read only where they are prepared.
    An empty `format` is taken from the extension of `file_name` (or `source_path`, or `name`).
    """
    format = format_for(file_name or source_path or name, format)
    _check_task_type(task_type)
    check_name(name or "", "dataset name")
    if format not in FORMATS:
        raise InvalidInput(
            f"unknown format {format!r}; choose one of {', '.join(FORMATS)}", code="unknown_format"
        )
    fractions = pipeline.parse_fractions(split)
    if (upload is None) == (source_path is None):
        raise InvalidInput(
            "give exactly one source: an uploaded file or a path under the import root", code="no_source"
        )
    arguments = dict(
        name=name,
        task_type=task_type,
        format=format,
        seed=seed,
        split=split,
        base_model=base_model,
        schema=schema,
        reuse_same_content=reuse_same_content,
    )
    if _source_size(upload, source_path) <= sync_prepare_bytes():
        return dataset_prepare(owner=owner, content=upload, source_path=source_path, **arguments)
    kept = _keep_upload(upload) if upload is not None else None
    params = {**arguments, "split": fractions, "source_path": source_path, "upload": kept and kept.name}
    try:
        with transaction.atomic():
            task = DatasetTask.objects.create(kind="prepare", owner=owner, params=params)
            transaction.on_commit(lambda: _enqueue_prepare(task.pk))
    except BaseException:
        if kept is not None:
            kept.unlink(missing_ok=True)
        raise
    return task


def _task_changed(task: DatasetTask) -> None:
    # The dataset page's outbox and its websockets: subscribers (t4dm_site.events.SUBSCRIBERS).
    publish(DatasetTaskChanged(task_pk=task.pk, status=task.status))


def _task_progress(task: DatasetTask, fraction: float, message: str) -> None:
    task.mark_progress(fraction, message)
    _task_changed(task)


def _enqueue_prepare(task_pk: int) -> None:
    from datasets_app.tasks import prepare_dataset_task

    prepare_dataset_task.apply_async(args=[task_pk], queue=_dataset_queue())


def dataset_prepare_run(*, task: DatasetTask) -> DatasetVersion | None:
    """The worker side of a queued prepare_dataset: the same `dataset_prepare` (all rows checked before
    anything is stored). A refusal (bad rows: the first one's line) fails the task with its message and
    details and creates no dataset. The kept upload is removed once the task has an outcome."""
    if task.status not in ("queued", "running"):
        return task.result_version
    task.mark_running()
    _task_changed(task)
    params = dict(task.params)
    upload = _uploads_folder() / params["upload"] if params.get("upload") else None
    try:
        if upload is not None and not upload.is_file():
            raise InvalidInput(
                "the uploaded file is gone (it was removed before it was prepared)", code="no_source"
            )
        with upload.open("rb") if upload is not None else contextlib.nullcontext() as content:
            result = dataset_prepare(
                owner=task.owner,
                name=params["name"],
                content=content,
                source_path=params.get("source_path"),
                task_type=params["task_type"],
                format=params["format"],
                seed=params["seed"],
                split=params.get("split"),
                base_model=params.get("base_model"),
                schema=params.get("schema"),
                reuse_same_content=params.get("reuse_same_content", True),
            )
    except Exception as exc:
        if isinstance(exc, InvalidInput):
            details = exc.details if isinstance(exc.details, dict) else {}
            task.mark_failed(exc.message, {**details, "code": exc.code})
            _task_changed(task)
        else:
            task.mark_failed(f"{type(exc).__name__}: {exc}")
            _task_changed(task)
        if upload is not None:
            upload.unlink(missing_ok=True)
        if isinstance(exc, InvalidInput):
            return None
        raise
    task.mark_succeeded(result)
    _task_changed(task)
    if upload is not None:
        upload.unlink(missing_ok=True)
    return result


def _with_validation_file(
    content: bytes | None, validation_content: bytes, format: str
) -> tuple[bytes, np.ndarray, dict[str, float]]:
    """Train rows then validation rows in one JSONL, with the split of each row fixed in advance."""
    if format != "jsonl" or content is None:
        raise InvalidInput("a separate validation file is supported for uploaded JSONL only")
    n_train = sum(1 for line in content.splitlines() if line.strip())
    n_validation = sum(1 for line in validation_content.splitlines() if line.strip())
    if not n_train or not n_validation:
        raise InvalidInput("the training and the validation file must each hold at least one row")
    combined = content.rstrip(b"\r\n") + b"\n" + validation_content
    split_of = np.array([0] * n_train + [1] * n_validation, dtype=np.int8)
    total = n_train + n_validation
    return combined, split_of, {"train": n_train / total, "validation": n_validation / total, "test": 0.0}


def _store_version(
    *,
    dataset: Dataset | None,
    owner,
    name: str = "",
    description: str = "",
    analysis: Analysis,
    content_hash: str,
    format: str,
    task_type: str,
    seed: int,
    fractions: dict,
    origin: str,
    source: str,
    base_model: str | None,
    report: dict,
    parent: DatasetVersion | None = None,
    provenance: list[str | None] | None = None,
) -> DatasetVersion:
    staging = storage.staging_folder()
    final: Path | None = None
    try:
        splits = storage.write_splits(
            staging, analysis.collected.table, analysis.split_of, provenance=provenance
        )
        with transaction.atomic():
            if dataset is None:
                dataset = Dataset.objects.create(
                    name=name, owner=owner, task_type=task_type, description=description
                )
                number = 1
            else:
                dataset = Dataset.objects.select_for_update().get(pk=dataset.pk)
                number = (dataset.versions.aggregate(n=Max("number"))["n"] or 0) + 1
            final = storage.datasets_root() / dataset.public_id / f"v{number}"
            version = DatasetVersion.objects.create(
                dataset=dataset,
                number=number,
                content_hash=content_hash,
                format=format,
                task_type=task_type,
                path=str(final),
                splits=splits,
                statistics=analysis.statistics,
                validation_status=analysis.status,
                validation_issues=analysis.issues,
                origin=origin,
                parent=parent,
                source=str(source)[:500],
                seed=seed,
                split_fractions=fractions,
                tokenizer=base_model or TINY_MODEL_NAME,
                report=report,
            )
            storage.move_into_place(staging, final)
    except BaseException:
        storage.remove_quietly(staging, final)
        raise
    return version


def dataset_result(version: DatasetVersion) -> dict:
    """The seed's DatasetResult shape."""
    return {
        "dataset_id": version.dataset.public_id,
        "format": version.format,
        "task_type": version.task_type,
        "statistics": version.statistics,
        "validation": {"status": version.validation_status, "issues": version.validation_issues},
        "output_path": version.path.rstrip("/") + "/",
    }


def version_result(version: DatasetVersion) -> dict:
    """DatasetResult plus the version, its lineage and its change report (clean/augment/knowledge)."""
    return {
        **dataset_result(version),
        "version": version.number,
        "origin": version.origin,
        "parent_version": version.parent.number if version.parent else None,
        "content_hash": version.content_hash,
        "report": version.report,
    }


# --- validate ------------------------------------------------------------------------------------------


def version_rows(version: DatasetVersion, split: str) -> list[dict]:
    info = version.splits.get(split)
    if not info:
        return []
    table = storage.read_split(version.path, split, info["file"])
    columns = [c for c in storage.CANONICAL_COLUMNS[version.task_type] if c in table.column_names]
    return [{k: v for k, v in row.items() if v is not None} for row in table.select(columns).to_pylist()]


def _version_items(version: DatasetVersion) -> tuple[list[RawRow], np.ndarray]:
    items, split_ids = [], []
    for s, split in enumerate(SPLITS):
        for i, row in enumerate(version_rows(version, split), start=1):
            items.append(RawRow(i, None, row))
            split_ids.append(s)
    return items, np.asarray(split_ids, dtype=np.int8)


def dataset_validate(
    *,
    version: DatasetVersion | None = None,
    content: bytes | BinaryIO | None = None,
    source_path: str | None = None,
    format: str = "jsonl",
    task_type: str = TaskType.CHAT,
    schema: dict | None = None,
    base_model: str | None = None,
) -> dict:
    """validate_dataset → {status: passed|warning|failed, issues, summary, statistics}.

    A stored version is checked split by split, leakage across its splits included; a file (upload or
    import path) is checked as one set of rows. Nothing is stored either way.
    """
    if version is not None:
        items, split_of = _version_items(version)
        analysis = _analyse(
            items,
            task_type=version.task_type,
            base_model=base_model or (version.tokenizer or None),
            schema=schema,
            fractions=version.split_fractions or None,
            seed=version.seed,
            split_of=split_of,
            raise_on_error=False,
        )
        for issue in analysis.issues:
            if issue.get("split") and issue["message"].startswith("row "):
                issue["row"] = issue.get("split_row")
                issue["message"] = f"{issue['split']} {issue['message']}"
    else:
        _check_task_type(task_type)
        source, format, _ = _open_source(content, source_path, format)
        analysis = _analyse(
            read_rows(source, format),
            task_type=task_type,
            base_model=base_model,
            schema=schema,
            fractions=None,
            seed=0,
            do_split=False,
            raise_on_error=False,
        )
    report = {
        "status": analysis.status,
        "issues": analysis.issues,
        "summary": analysis.summary,
        "statistics": analysis.statistics,
    }
    return _with_hook_issues(report, analysis, version=version, task_type=task_type)


def _with_hook_issues(
    report: dict, analysis: Analysis, *, version: DatasetVersion | None, task_type: str
) -> dict:
    """The pluggable validator hook (T4DM_VALIDATOR_HOOK / T4DM_VALIDATOR_URL), if configured: its
    issues join the report with source "hook"; a failing hook is an issue too, never a 500."""
    from experiments.integrations import validator

    if not validator.hooks():
        return report
    collected = analysis.collected
    n = min(collected.n, validator.MAX_ROWS)
    data = collected.table.slice(0, n).to_pylist()
    split_of = analysis.split_of
    rows = [
        {
            "row": int(collected.rows[i]),
            "split": SPLITS[int(split_of[i])] if split_of is not None and len(split_of) > i else None,
            "data": data[i],
        }
        for i in range(n)
    ]
    issues = validator.dataset_issues(
        task_type=version.task_type if version is not None else task_type,
        rows=rows,
        dataset_id=version.dataset.public_id if version is not None else None,
    )
    return validator.merge_into_report(report, issues)


# --- clean ---------------------------------------------------------------------------------------------


def _derived_version(
    *,
    parent: DatasetVersion,
    split_rows: dict[str, list[dict]],
    origin: str,
    report: dict,
    provenance: list[str | None] | None = None,
) -> DatasetVersion:
    items, split_ids = [], []
    for s, split in enumerate(SPLITS):
        for i, row in enumerate(split_rows.get(split, []), start=1):
            items.append(RawRow(i, None, {k: v for k, v in row.items() if v is not None}))
            split_ids.append(s)
    if not items:
        raise InvalidInput("the result would hold no rows; nothing was stored", code="empty_dataset")
    split_of = np.asarray(split_ids, dtype=np.int8)
    if not (split_of == 0).any():
        raise InvalidInput(
            "the result would have an empty train split; nothing was stored", code="empty_dataset"
        )
    analysis = _analyse(
        items,
        task_type=parent.task_type,
        base_model=parent.tokenizer or None,
        schema=None,
        fractions=parent.split_fractions or None,
        seed=parent.seed,
        split_of=split_of,
    )
    table_hash = storage.content_hash_of_table(analysis.collected.table, split_of)
    if provenance is not None:  # train rows first, then the evaluation rows, which have none
        provenance = provenance + [None] * (len(items) - len(provenance))
        table_hash = storage.content_hash_of_bytes((table_hash + json.dumps(provenance)).encode())
    same = parent.dataset.versions.filter(content_hash=table_hash).first()
    if same:
        return same
    return _store_version(
        dataset=parent.dataset,
        owner=parent.dataset.owner,
        analysis=analysis,
        content_hash=table_hash,
        format=parent.format,
        task_type=parent.task_type,
        seed=parent.seed,
        fractions=parent.split_fractions,
        origin=origin,
        source=f"{parent.dataset.public_id} v{parent.number}",
        base_model=parent.tokenizer if parent.tokenizer != TINY_MODEL_NAME else None,
        report=report,
        parent=parent,
        provenance=provenance,
    )


def dataset_clean(
    *,
    version: DatasetVersion,
    remove_duplicates: bool = True,
    fix_formatting: bool = True,
    near_duplicates: bool = True,
) -> DatasetVersion:
    """clean_dataset → a new version and a report of exactly what changed (counts and examples).
    Nothing to change → Conflict `nothing_to_clean` (409), and no version is made."""
    from datasets_app.cleaning import clean_rows

    split_rows = {split: version_rows(version, split) for split in SPLITS}
    cleaned, report = clean_rows(
        split_rows,
        task_type=version.task_type,
        remove_duplicates=remove_duplicates,
        fix_formatting=fix_formatting,
        near_duplicates=near_duplicates,
    )
    if not any(report["changes"].values()):
        raise Conflict(
            f"nothing to clean: v{version.number} has no empty rows, duplicates or formatting problems "
            "for the options chosen; no new version was made",
            code="nothing_to_clean",
            details={"version": version.number, "options": report["options"]},
        )
    return _derived_version(parent=version, split_rows=cleaned, origin=VersionOrigin.CLEANED, report=report)


# --- augment -------------------------------------------------------------------------------------------


def _dataset_queue() -> str:
    return settings.CELERY_DATASET_QUEUE


def dataset_augment_request(
    *, owner, version: DatasetVersion, methods: list[str], options: dict | None = None
) -> DatasetTask:
    """Check the methods now (a missing model is said at once), then queue the work on the datasets queue."""
    from datasets_app.augmentation import check_methods

    options = dict(options or {})
    check_methods(methods, options, task_type=version.task_type)
    with transaction.atomic():
        task = DatasetTask.objects.create(
            kind="augment",
            owner=owner,
            source_version=version,
            params={"methods": methods, "options": options},
        )
        transaction.on_commit(lambda: _enqueue_augment(task.pk))
    return task


def _enqueue_augment(task_pk: int) -> None:
    from datasets_app.tasks import augment_dataset_task

    augment_dataset_task.apply_async(args=[task_pk], queue=_dataset_queue())


def dataset_augment_run(*, task: DatasetTask) -> DatasetVersion | None:
    """The worker side of augment_dataset: new rows go to train only, each with its provenance."""
    from datasets_app.augmentation import augment_rows

    if task.status not in ("queued", "running"):
        return task.result_version
    task.mark_running()
    _task_changed(task)
    version = task.source_version
    try:
        split_rows = {split: version_rows(version, split) for split in SPLITS}
        new_rows, provenance, report = augment_rows(
            split_rows["train"],
            task_type=version.task_type,
            methods=task.params["methods"],
            options=task.params.get("options", {}),
            progress=lambda fraction, message: _task_progress(task, 0.9 * fraction, message),
            existing=split_rows["validation"] + split_rows["test"],
        )
        train = split_rows["train"] + new_rows
        old = _old_provenance(version, len(split_rows["train"]))
        result = _derived_version(
            parent=version,
            split_rows={**split_rows, "train": train},
            origin=VersionOrigin.AUGMENTED,
            report=report,
            provenance=old + provenance,
        )
    except Exception as exc:
        task.mark_failed(getattr(exc, "message", None) or f"{type(exc).__name__}: {exc}")
        _task_changed(task)
        if isinstance(exc, InvalidInput):
            return None
        raise
    task.mark_succeeded(result)
    _task_changed(task)
    return result


def _old_provenance(version: DatasetVersion, n: int) -> list[str | None]:
    table = storage.read_split(version.path, "train", version.splits["train"]["file"])
    if "provenance" in table.column_names:
        return table.column("provenance").to_pylist()
    return [None] * n


# --- knowledge base --------------------------------------------------------------------------------------


def dataset_prepare_from_knowledge(
    *,
    owner,
    content: bytes | None = None,
    source_path: str | None = None,
    knowledge_type: str = "all",
    format: str = "chat",
    name: str = "",
    seed: int = 42,
    phrasings: int = 3,
    split: dict[str, float] | None = None,
) -> DatasetVersion:
    """prepare_from_knowledge: concepts → Q&A, procedures → instruction following, facts → retrieval
    questions, each in several phrasings, stored as a chat (or instruction) dataset version."""
    from datasets_app.knowledge import knowledge_to_rows, load_knowledge

    if content is None and source_path is None:
        from datasets_app.knowledge import EXAMPLE_KB

        content = EXAMPLE_KB.read_bytes()
    if source_path is not None:
        content = resolve_import_path(source_path).read_bytes()
    document = load_knowledge(content)
    rows, report = knowledge_to_rows(
        document, knowledge_type=knowledge_type, format=format, phrasings=phrasings
    )
    jsonl = "".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows).encode()
    return dataset_prepare(
        owner=owner,
        name=name or f"{document.get('name', 'knowledge base')} ({knowledge_type})",
        content=jsonl,
        task_type=TaskType.CHAT if format == "chat" else TaskType.INSTRUCTION,
        format="jsonl",
        seed=seed,
        split=split,
        origin=VersionOrigin.KNOWLEDGE,
        report=report,
        description=document.get("description", ""),
    )
