"""Datasets (/api/v1/datasets): prepare, validate, clean, augment, knowledge import, versions, preview,
download. Thin: parse → service/selector → serialize; domain errors become 4xx in t4dm_site.api."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from django.http import FileResponse, HttpResponse
from ninja import Field, File, Form, Router, Schema
from ninja.files import UploadedFile

from datasets_app.models import DatasetTask
from datasets_app.selectors import (
    dataset_get,
    dataset_task_get,
    dataset_task_to_dict,
    dataset_version_get,
    dataset_version_latest,
    dataset_version_preview,
    dataset_versions,
    datasets_visible_to,
)
from datasets_app.services import (
    dataset_augment_request,
    dataset_clean,
    dataset_prepare_from_knowledge,
    dataset_prepare_request,
    dataset_result,
    dataset_validate,
    format_for,
    version_result,
)
from t4dm_site.auth import trainer_auth
from t4dm_site.errors import InvalidInput
from t4dm_site.jsonlimits import loads_bounded

router = Router(tags=["datasets"], auth=trainer_auth)
KNOWLEDGE_MAX_BYTES = 32 * 1024 * 1024  # a knowledge base is one JSON document, parsed at once


class DatasetResultOut(Schema):
    dataset_id: str
    format: str
    task_type: str
    statistics: dict[str, Any]
    validation: dict[str, Any]
    output_path: str


class VersionOut(DatasetResultOut):
    version: int
    origin: str
    parent_version: int | None
    content_hash: str
    report: dict[str, Any]


class ValidationResultOut(Schema):
    status: str
    issues: list[dict[str, Any]]
    summary: dict[str, Any]
    statistics: dict[str, Any]


class ValidateIn(Schema):
    version: int | None = None
    row_schema: dict[str, Any] | None = None
    base_model: str | None = None


class CleanIn(Schema):
    version: int | None = None
    remove_duplicates: bool = True
    fix_formatting: bool = True
    near_duplicates: bool = True


class AugmentIn(Schema):
    version: int | None = None
    methods: list[str] = ["paraphrase", "backtranslate"]
    options: dict[str, Any] = {}


class DatasetTaskOut(Schema):
    task_id: str
    kind: str = Field(description="augment, or prepare (a large upload or import on the dataset worker)")
    dataset_id: str | None = Field(
        description="The source's dataset (augment); for prepare the new dataset, once it succeeded"
    )
    source_version: int | None
    status: str
    progress: float
    message: str
    error: str
    error_details: dict[str, Any] = Field(
        description="A refusal's details, e.g. line and row of the first bad row (prepare)"
    )
    result_version: int | None
    result: DatasetResultOut | None = Field(
        None, description="prepare, once succeeded: the same DatasetResult a small upload answers with 201"
    )


class PreviewOut(Schema):
    split: str
    page: int
    pages: int
    page_size: int
    total: int
    first_row: int
    rows: list[dict[str, Any]]
    numbers: list[int] = []
    q: str = ""


def _json_field(value: str, name: str) -> Any:
    if not value:
        return None
    try:
        return loads_bounded(value, what=name)  # a cap on nesting: deep JSON was a RecursionError (500)
    except json.JSONDecodeError as exc:
        raise InvalidInput(f"{name} must be JSON ({exc.msg})", code="invalid_input") from None


def parse_split(value: str) -> dict[str, float] | None:
    """'80/10/10', '0.8,0.1,0.1' or '{"train": 0.8, ...}' → fractions."""
    value = (value or "").strip()
    if not value:
        return None
    if value.startswith("{"):
        return _json_field(value, "split")
    parts = [p for p in value.replace("/", ",").split(",") if p.strip()]
    try:
        numbers = [float(p) for p in parts]
    except ValueError:
        raise InvalidInput(
            "split must look like 80/10/10, 0.8,0.1,0.1 or a JSON object", code="invalid_split"
        ) from None
    if len(numbers) != 3:
        raise InvalidInput("split needs three numbers: train, validation, test", code="invalid_split")
    total = sum(numbers) or 1
    return dict(zip(("train", "validation", "test"), (n / total for n in numbers), strict=True))


def _task_out(task) -> dict:
    result = task.result_version
    return {
        **dataset_task_to_dict(task),
        "result": dataset_result(result) if result and task.kind == "prepare" else None,
    }


@router.post("", response={201: DatasetResultOut, 202: DatasetTaskOut})
def dataset_upload(
    request,
    response: HttpResponse,
    file: UploadedFile | None = File(None),
    name: str = Form(""),
    task_type: str = Form("chat"),
    format: str = Form(
        "", description="jsonl, json, csv, parquet or hf; empty: from the file's extension (else jsonl)."
    ),
    path: str = Form(
        "", description="A file or save_to_disk folder under the import root, instead of a file."
    ),
    seed: int = Form(42),
    split: str = Form("", description="Fractions, e.g. 80/10/10 (the default)."),
    base_model: str = Form("", description="Whose tokenizer counts tokens; default t4dm-tiny."),
    json_schema: str = Form("", description="An optional JSON Schema every row must follow."),
    new_dataset: bool = Form(
        False,
        description="Always a new dataset with this name, even when identical content is already stored "
        "(by default that version's dataset is returned, with the header X-T4DM-Existing-Dataset: true).",
    ),
):
    """prepare_dataset from an uploaded file or an import-root path. A source up to
    T4DM_SYNC_PREPARE_BYTES (default 1 MiB) is prepared at once: 201 with the DatasetResult. A larger one
    is stored and prepared on the dataset worker: 202 with a task; poll GET /datasets/tasks/{task_id}
    until `status` is succeeded (`result` is the DatasetResult) or failed (`error`, `error_details`
    with the first bad row's line; no dataset was created)."""
    outcome = dataset_prepare_request(
        owner=request.auth,
        name=name or (file.name if file else Path(path).name),
        upload=file.file if file else None,
        source_path=path or None,
        task_type=task_type,
        format=format,
        seed=seed,
        split=parse_split(split),
        base_model=base_model or None,
        schema=_json_field(json_schema, "json_schema"),
        file_name=file.name if file else None,
        reuse_same_content=not new_dataset,
    )
    if isinstance(outcome, DatasetTask):
        return 202, _task_out(outcome)
    if getattr(outcome, "reused", False):
        # 201 as before (clients and the seed's prepare_dataset read it); the header says it existed.
        response.headers["X-T4DM-Existing-Dataset"] = "true"
    return 201, dataset_result(outcome)


@router.get("", response=list[DatasetResultOut])
def dataset_list(request):
    return [
        dataset_result(d.latest_version) for d in datasets_visible_to(request.auth)[:200] if d.latest_version
    ]


@router.post("/validate", response=ValidationResultOut)
def dataset_validate_file(
    request,
    file: UploadedFile | None = File(None),
    path: str = Form(""),
    task_type: str = Form("chat"),
    format: str = Form("", description="Empty: from the file's extension (else jsonl)."),
    json_schema: str = Form("", description="An optional JSON Schema every row must follow."),
    base_model: str = Form(""),
):
    """validate_dataset on a file (upload or import-root path); nothing is stored."""
    return dataset_validate(
        content=file.file if file else None,
        source_path=path or None,
        task_type=task_type,
        format=format_for(file.name if file else path, format),
        schema=_json_field(json_schema, "json_schema"),
        base_model=base_model or None,
    )


@router.post("/knowledge", response={201: VersionOut})
def dataset_from_knowledge(
    request,
    file: UploadedFile | None = File(
        None, description="A knowledge-base JSON; the shipped example when absent."
    ),
    path: str = Form(""),
    knowledge_type: str = Form("all", description="all, concepts, procedures or facts"),
    format: str = Form("chat", description="chat or instruction"),
    name: str = Form(""),
    phrasings: int = Form(3),
    seed: int = Form(42),
):
    """prepare_from_knowledge: concepts → Q&A, procedures → instructions, facts → retrieval questions.
    Without a file or path, the shipped example knowledge base (send at least one field, e.g.
    knowledge_type); a request with no body at all is refused."""
    if file is None and not request.POST:
        raise InvalidInput(
            "the request has no body: upload a knowledge base (file), name one under the import root (path), "
            "or send knowledge_type to use the shipped example",
            code="no_source",
        )
    if file is not None and file.size > KNOWLEDGE_MAX_BYTES:
        raise InvalidInput(
            f"the knowledge base has {file.size} bytes; the limit is {KNOWLEDGE_MAX_BYTES}", code="too_large"
        )
    version = dataset_prepare_from_knowledge(
        owner=request.auth,
        content=file.read() if file else None,
        source_path=path or None,
        knowledge_type=knowledge_type,
        format=format,
        name=name,
        phrasings=phrasings,
        seed=seed,
    )
    return 201, version_result(version)


@router.get("/tasks/{task_id}", response=DatasetTaskOut)
def dataset_task_detail(request, task_id: str):
    return _task_out(dataset_task_get(user=request.auth, task_id=task_id))


@router.get("/{dataset_id}", response=DatasetResultOut)
def dataset_detail(request, dataset_id: str):
    return dataset_result(dataset_version_latest(user=request.auth, dataset_id=dataset_id))


@router.get("/{dataset_id}/versions", response=list[VersionOut])
def dataset_version_list(request, dataset_id: str):
    return [
        version_result(v)
        for v in dataset_versions(dataset=dataset_get(user=request.auth, dataset_id=dataset_id))
    ]


@router.get("/{dataset_id}/versions/{number}", response=VersionOut)
def dataset_version_detail(request, dataset_id: str, number: int):
    return version_result(dataset_version_get(user=request.auth, dataset_id=dataset_id, number=number))


@router.get("/{dataset_id}/versions/{number}/rows", response=PreviewOut)
def dataset_version_rows(
    request, dataset_id: str, number: int, split: str = "train", page: int = 1, q: str = ""
):
    """A page of a split's rows; `q` keeps the rows whose text contains it (case ignored)."""
    version = dataset_version_get(user=request.auth, dataset_id=dataset_id, number=number)
    return dataset_version_preview(version=version, split=split, page=page, q=q)


@router.get("/{dataset_id}/versions/{number}/download")
def dataset_version_download(request, dataset_id: str, number: int, split: str = "train"):
    """One split's Parquet file."""
    version = dataset_version_get(user=request.auth, dataset_id=dataset_id, number=number)
    return _download(version, split)


def _download(version, split: str) -> FileResponse:
    from t4dm_site.errors import NotFound

    info = version.splits.get(split)
    if info is None:
        raise NotFound(f"{version} has no split {split!r}")
    filename = f"{version.dataset.public_id}-v{version.number}-{info['file']}"
    return FileResponse(open(Path(version.path) / info["file"], "rb"), as_attachment=True, filename=filename)


@router.post("/{dataset_id}/validate", response=ValidationResultOut)
def dataset_validate_stored(request, dataset_id: str, payload: ValidateIn):
    """validate_dataset on a stored version (leakage across its splits included)."""
    version = dataset_version_get(user=request.auth, dataset_id=dataset_id, number=payload.version)
    return dataset_validate(version=version, schema=payload.row_schema, base_model=payload.base_model)


@router.post("/{dataset_id}/clean", response={201: VersionOut})
def dataset_clean_endpoint(request, dataset_id: str, payload: CleanIn):
    """clean_dataset → a new version with a report of what changed; 409 `nothing_to_clean` when the
    options change nothing (no identical version is made)."""
    version = dataset_version_get(user=request.auth, dataset_id=dataset_id, number=payload.version)
    cleaned = dataset_clean(
        version=version,
        remove_duplicates=payload.remove_duplicates,
        fix_formatting=payload.fix_formatting,
        near_duplicates=payload.near_duplicates,
    )
    return 201, version_result(cleaned)


@router.post("/{dataset_id}/augment", response={202: DatasetTaskOut})
def dataset_augment_endpoint(request, dataset_id: str, payload: AugmentIn):
    """augment_dataset: queued on the datasets queue; poll /datasets/tasks/{task_id} for progress."""
    version = dataset_version_get(user=request.auth, dataset_id=dataset_id, number=payload.version)
    task = dataset_augment_request(
        owner=request.auth, version=version, methods=payload.methods, options=payload.options
    )
    return 202, _task_out(task)
