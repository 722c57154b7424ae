from __future__ import annotations

from django.db.models import QuerySet

from datasets_app.models import Dataset, DatasetVersion
from t4dm_site.errors import NotFound
from t4dm_site.public_ids import parse_public_id
from t4dm_site.roles import is_admin


def datasets_visible_to(user) -> QuerySet[Dataset]:
    """Sharing rule: owners see their own datasets; admins see all."""
    datasets = Dataset.objects.prefetch_related("versions")
    return datasets if is_admin(user) else datasets.filter(owner=user)


def dataset_version_latest(*, user, dataset_id: str) -> DatasetVersion:
    dataset = datasets_visible_to(user).filter(pk=parse_public_id("ds", dataset_id)).first()
    version = dataset.latest_version if dataset else None
    if version is None:
        raise NotFound(f"dataset {dataset_id} does not exist")
    return version
