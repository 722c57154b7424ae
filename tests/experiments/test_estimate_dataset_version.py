"""The config form's live estimate is for the dataset version the form has picked, not the dataset's
latest: an older, smaller version estimates a shorter run (POST /configs/estimate/ takes
`dataset_version`, as POST /configs does)."""

from __future__ import annotations

import json

import pytest

from datasets_app.models import DatasetVersion
from datasets_app.services import dataset_prepare
from tests.conftest import DEMO_ROWS

pytestmark = pytest.mark.django_db


def _train_tokens(version: DatasetVersion) -> int:
    stats = version.statistics  # tokens per row × training rows, as the estimator counts them
    return int(
        (stats.get("avg_tokens_input", 0) + stats.get("avg_tokens_output", 0)) * stats["train_samples"]
    )


def _estimate(client, payload: dict) -> dict:
    response = client.post("/configs/estimate/", json.dumps(payload), content_type="application/json")
    assert response.status_code == 200, response.content
    return response.json()["estimate"]


def test_the_estimate_uses_the_picked_dataset_version(client, researcher, artifact_root):
    # given: version 1, and its estimate while it is the latest
    rows = DEMO_ROWS.read_bytes()
    v1 = dataset_prepare(owner=researcher, name="grows", content=rows, task_type="chat")
    client.force_login(researcher)
    payload = {
        "dataset_id": v1.dataset.public_id,
        "model_base": "llama-3-8b",
        "approach": "lora",
        "hyperparams": {"epochs": 3},
    }
    estimate_v1 = _estimate(client, payload)
    # a second version, ten times larger, becomes the latest
    v2 = DatasetVersion.objects.get(pk=v1.pk)
    v2.pk, v2.number, v2.parent = None, 2, v1
    v2.statistics = {**v1.statistics, "train_samples": v1.statistics["train_samples"] * 10}
    v2.save()
    assert v1.dataset.latest_version == v2
    estimate_latest = _estimate(client, payload)
    assert estimate_latest["training_time"] != estimate_v1["training_time"]

    # when: the form picks version 1
    picked = _estimate(client, {**payload, "dataset_version": 1})

    # then: the estimate is version 1's, and version 2 picked by number is the latest's
    assert picked == estimate_v1
    assert _estimate(client, {**payload, "dataset_version": 2}) == estimate_latest


def test_the_estimate_says_when_the_picked_version_does_not_exist(client, researcher, artifact_root):
    version = dataset_prepare(owner=researcher, name="one", content=DEMO_ROWS.read_bytes(), task_type="chat")
    client.force_login(researcher)
    payload = {"dataset_id": version.dataset.public_id, "model_base": "llama-3-8b", "dataset_version": 7}
    response = client.post("/configs/estimate/", json.dumps(payload), content_type="application/json")
    assert response.status_code == 400 or response.status_code == 404
    assert "no version 7" in response.json()["error"]["message"]


def test_the_estimate_api_takes_the_dataset_version_too(api, researcher, artifact_root):
    v1 = dataset_prepare(owner=researcher, name="grows", content=DEMO_ROWS.read_bytes(), task_type="chat")
    v2 = DatasetVersion.objects.get(pk=v1.pk)
    v2.pk, v2.number, v2.parent = None, 2, v1
    v2.statistics = {**v1.statistics, "train_samples": v1.statistics["train_samples"] * 10}
    v2.save()
    body = {"dataset_id": v1.dataset.public_id, "model_base": "llama-3-8b", "approach": "lora"}

    old = api.post(researcher, "/estimate", {**body, "dataset_version": 1})
    latest = api.post(researcher, "/estimate", body)

    assert old.status_code == latest.status_code == 200
    assert f"{_train_tokens(v1)} train tokens" in old.json()["basis"]
    assert f"{_train_tokens(v2)} train tokens" in latest.json()["basis"]
