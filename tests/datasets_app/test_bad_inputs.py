from __future__ import annotations

import re

import pytest

from datasets_app.models import Dataset, DatasetVersion
from datasets_app.services import dataset_prepare
from t4dm_site.errors import InvalidInput
from tests.datasets_app.bad_inputs import CORPUS


def test_the_corpus_has_at_least_25_kinds():
    assert len({bad.kind for bad in CORPUS}) >= 25


def test_every_bad_input_gives_a_clear_error_and_stores_nothing(researcher, artifact_root):
    failures = []
    for bad in CORPUS:
        content = bad.make()
        try:
            dataset_prepare(
                owner=researcher, name=bad.kind, content=content, task_type=bad.task_type, format=bad.format
            )
        except InvalidInput as exc:
            if not re.search(bad.where, exc.message):
                failures.append(f"{bad.kind}: {exc.message!r} does not match {bad.where!r}")
        else:
            failures.append(f"{bad.kind}: accepted")
        del content
    assert not failures, "\n".join(failures)
    assert Dataset.objects.count() == 0 and DatasetVersion.objects.count() == 0
    stored = (
        [p for p in (artifact_root / "datasets").rglob("*")] if (artifact_root / "datasets").exists() else []
    )
    assert stored == []


@pytest.mark.parametrize(
    "bad",
    [b for b in CORPUS if b.kind in ("truncated JSON line", "CSV with a ragged row")],
    ids=lambda b: b.kind,
)
def test_the_api_answers_400_with_the_line(api, researcher, artifact_root, bad):
    response = api.upload(
        researcher, "/datasets", content=bad.make(), task_type=bad.task_type, format=bad.format
    )
    assert response.status_code == 400
    error = response.json()["error"]
    assert re.search(bad.where, error["message"]) and error["details"]["line"] is not None
