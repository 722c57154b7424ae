"""Export: merged or adapter folder that reloads with from_pretrained and generates the same tokens."""

from __future__ import annotations

import tarfile
from pathlib import Path

import pytest
from transformers import AutoModelForCausalLM, AutoTokenizer

from models_registry.export import MANIFEST_NAME, greedy_generate, load_for_inference, verify_manifest
from models_registry.services import model_version_auto_create, model_version_export

pytestmark = pytest.mark.django_db

PROMPT = "Question: What does T4DM stand for?\nAnswer:"


@pytest.fixture
def version(make_config, succeeded_job):
    return model_version_auto_create(job=succeeded_job(make_config()))


def _base_path(version) -> str:
    from experiments.services import resolve_model_base

    return resolve_model_base(version.config.model_base, user=version.job.owner)


def _platform_tokens(version) -> list[int]:
    model = load_for_inference(version.artifact_path)
    tokenizer = AutoTokenizer.from_pretrained(version.artifact_path)
    return greedy_generate(model, tokenizer, PROMPT)


def test_merged_export_reloads_and_generates_the_same_tokens(version, researcher):
    # when
    export = model_version_export(version=version, merge=True, actor=researcher)
    # then: a plain transformers folder, no peft needed to load it
    folder = Path(export.path)
    assert export.merged and not (folder / "adapter_config.json").exists()
    model = AutoModelForCausalLM.from_pretrained(folder).eval()
    tokenizer = AutoTokenizer.from_pretrained(folder)
    exported = greedy_generate(model, tokenizer, PROMPT)
    assert len(exported) == 16
    assert exported == _platform_tokens(version)
    base = AutoModelForCausalLM.from_pretrained(_base_path(version)).eval()
    assert greedy_generate(base, tokenizer, PROMPT) != exported, (
        "the adapter should change what the model says"
    )


def test_adapter_export_keeps_the_adapter_and_generates_the_same_tokens(version, researcher):
    from peft import AutoPeftModelForCausalLM

    export = model_version_export(version=version, merge=False, actor=researcher)
    folder = Path(export.path)
    assert not export.merged and (folder / "adapter_config.json").exists()
    model = AutoPeftModelForCausalLM.from_pretrained(folder).eval()
    tokenizer = AutoTokenizer.from_pretrained(folder)
    assert greedy_generate(model, tokenizer, PROMPT) == _platform_tokens(version)


def test_export_has_card_manifest_and_archive(version, researcher):
    export = model_version_export(version=version, merge=True, actor=researcher)
    folder = Path(export.path)
    card = (folder / "README.md").read_text()
    for section in (
        "## Training data",
        "## Training configuration",
        "## Evaluation",
        "## Intended use",
        "## Limitations",
    ):
        assert section in card
    assert verify_manifest(folder) == []
    assert {"README.md", "config.json", "tokenizer.json"} <= set(export.manifest["files"])
    (folder / "README.md").write_text("tampered")
    assert verify_manifest(folder) == ["README.md"]
    with tarfile.open(export.archive_path) as tar:
        names = tar.getnames()
    assert f"{folder.name}/{MANIFEST_NAME}" in names and f"{folder.name}/model.safetensors" in names


def test_card_hyperparameters_are_a_table_not_json(version):
    """The card (README.md of an export, and the version page's card) lists hyperparameters as a
    Markdown table that renders as one, not as a raw JSON block."""
    from models_registry.cards import model_card_render

    card = model_card_render(version)
    assert (
        "```" not in card and "{" not in card.split("## Training configuration")[1].split("## Evaluation")[0]
    )
    assert "| Hyperparameter | Value |" in card
    for name in version.config.hyperparameters:
        assert f"| {name} | " in card
