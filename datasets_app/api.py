"""Datasets (/api/v1/datasets). The datasets issue adds validate/clean/augment/knowledge import."""

from __future__ import annotations

from typing import Any

from ninja import File, Form, Router, Schema
from ninja.files import UploadedFile

from datasets_app.models import Dataset
from datasets_app.services import dataset_prepare, dataset_result
from t4dm_site.auth import trainer_auth
from t4dm_site.errors import NotFound
from t4dm_site.public_ids import parse_public_id
from t4dm_site.roles import is_admin

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


def _visible(user):
    return Dataset.objects.all() if is_admin(user) else Dataset.objects.filter(owner=user)


@router.get("", response=list[DatasetResultOut])
def dataset_list(request):
    return [dataset_result(d.latest_version) for d in _visible(request.auth).prefetch_related("versions")[:200] if d.latest_version]


@router.get("/{dataset_id}", response=DatasetResultOut)
def dataset_detail(request, dataset_id: str):
    dataset = _visible(request.auth).filter(pk=parse_public_id("ds", dataset_id)).first()
    if dataset is None or dataset.latest_version is None:
        raise NotFound(f"dataset {dataset_id} does not exist")
    return dataset_result(dataset.latest_version)
