"""Datasets (/api/v1/datasets). The datasets issue adds validate/clean/augment/knowledge import."""

from __future__ import annotations

from typing import Any

from ninja import File, Form, Router, Schema
from ninja.files import UploadedFile

from datasets_app.selectors import dataset_version_latest, datasets_visible_to
from datasets_app.services import dataset_prepare, dataset_result
from t4dm_site.auth import trainer_auth

router = Router(tags=["datasets"], auth=trainer_auth)


class DatasetResultOut(Schema):
    dataset_id: str
    format: str
    task_type: str
    statistics: dict[str, Any]
    validation: dict[str, Any]
    output_path: str


@router.post("", response={201: DatasetResultOut})
def dataset_upload(
    request,
    file: UploadedFile = File(...),
    name: str = Form(""),
    task_type: str = Form("chat"),
    format: str = Form("jsonl"),
):
    """prepare_dataset from an uploaded file."""
    version = dataset_prepare(
        owner=request.auth, name=name or file.name, content=file.read(), task_type=task_type, format=format
    )
    return 201, dataset_result(version)


@router.get("", response=list[DatasetResultOut])
def dataset_list(request):
    return [
        dataset_result(d.latest_version) for d in datasets_visible_to(request.auth)[:200] if d.latest_version
    ]


@router.get("/{dataset_id}", response=DatasetResultOut)
def dataset_detail(request, dataset_id: str):
    return dataset_result(dataset_version_latest(user=request.auth, dataset_id=dataset_id))
