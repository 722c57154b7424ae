"""Issue 19, "base models are offered that cannot be loaded here": with no hub access (the default,
T4DM_HUB_MODELS off; or HF_HUB_OFFLINE=1) a config that trains locally on a hub-only base model is
refused at once with a 400 listing what can be used, instead of failing on the worker ~50 s later
with a raw OSError. Estimates of catalog names and the OpenAI provider path are unaffected."""

from __future__ import annotations

import pytest

from datasets_app.services import dataset_prepare
from tests.conftest import DEMO_ROWS


@pytest.fixture
def dataset_id(researcher, artifact_root) -> str:
    return dataset_prepare(
        owner=researcher, name="demo", content=DEMO_ROWS.read_bytes(), task_type="chat"
    ).dataset.public_id


def _config(api, user, dataset_id, model_base, **extra):
    return api.post(user, "/configs", {"model_base": model_base, "dataset_id": dataset_id, **extra})


@pytest.mark.parametrize("model_base", ["qwen2.5-0.5b", "meta-llama/Meta-Llama-3-8B", "llama-3-8b"])
def test_a_hub_only_base_is_refused_with_what_can_be_used(api, researcher, dataset_id, model_base):
    response = _config(api, researcher, dataset_id, model_base)
    assert response.status_code == 400, response.content
    message = response.json()["error"]["message"]
    assert message.startswith(f"model_base: {model_base} is a Hugging Face hub id"), message
    assert "t4dm-tiny" in message and "job-001" in message and "model_id@1.0.0" in message


def test_hf_hub_offline_refuses_even_with_hub_models_on(api, researcher, dataset_id, settings, monkeypatch):
    settings.HUB_MODELS = True
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    assert _config(api, researcher, dataset_id, "qwen2.5-0.5b").status_code == 400


def test_with_hub_access_a_hub_id_is_accepted(api, researcher, dataset_id, settings, monkeypatch):
    settings.HUB_MODELS = True
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    response = _config(api, researcher, dataset_id, "qwen2.5-0.5b")
    assert response.status_code == 201, response.content


def test_local_bases_are_still_accepted(api, researcher, dataset_id, tiny_model_dir):
    assert _config(api, researcher, dataset_id, "t4dm-tiny").status_code == 201


def test_estimates_of_catalog_names_still_work(api, researcher):
    response = api.post(researcher, "/estimate", {"model_base": "llama-3-8b", "approach": "lora"})
    assert response.status_code == 200, response.content
    assert response.json()["recommended_gpu"] != "unknown"
