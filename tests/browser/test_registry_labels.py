"""Evaluation and registry pages speak to people: kinds and stages as labels (not API names or
internal codes), one date format, the model card rendered (safely), and Export saying it is working."""

from __future__ import annotations

import re

import pytest

from experiments.models import Checkpoint, Evaluation, EvaluationStatus, TrainingJob
from models_registry.models import ModelVersion, RegisteredModel
from models_registry.services import model_version_transition

pytestmark = pytest.mark.django_db


def _version(researcher, **fields) -> ModelVersion:
    registered = RegisteredModel.objects.get_or_create(owner=researcher, model_id="t4dm-lab")[0]
    return ModelVersion.objects.create(
        registered=registered, model_id="t4dm-lab", version="1.0.0", base_model="tiny", **fields
    )


def test_evaluation_kinds_are_labels_not_api_names(client, researcher, demo_config):
    job = TrainingJob.objects.create(owner=researcher, config=demo_config, experiment=demo_config.experiment)
    checkpoint = Checkpoint.objects.create(job=job, step=10, path="/x/checkpoint-10", metrics={})
    common = {"owner": researcher, "status": EvaluationStatus.SUCCEEDED, "model_path": "x"}
    plain = Evaluation.objects.create(kind="evaluate", **common)
    Evaluation.objects.create(kind="evaluate", job=job, checkpoint=checkpoint, **common)
    Evaluation.objects.create(kind="compare_models", **common)
    client.force_login(researcher)
    listed = client.get("/evaluations/").content.decode()
    for api_name in ("evaluate_model", "compare_models", "compare_versions"):
        assert f"<td>{api_name}</td>" not in listed
    for label in ("Model evaluation", "Checkpoint evaluation", "Model comparison"):
        assert f"<td>{label}</td>" in listed
    detail = client.get(f"/evaluations/{plain.public_id}/").content.decode()
    assert '<span id="eval-kind">Model evaluation</span>' in detail
    assert "evaluate_model" not in detail


def test_version_page_labels_dates_card_and_export_progress(client, researcher):
    version = _version(
        researcher,
        model_card="# Lab model\n\nGood at **questions**.\n\n<script>alert(1)</script>",
    )
    model_version_transition(version=version, to_stage="staging", actor=researcher, reason="try it")
    client.force_login(researcher)
    html = client.get("/models/t4dm-lab/1.0.0/").content.decode()
    history = html.split('id="history"')[1].split("</table>")[0]
    assert '<span class="badge none">Unstaged</span>' in history
    assert '<span class="badge staging">Staging</span>' in history
    assert re.search(r'<td class="small">\d{4}-\d\d-\d\d \d\d:\d\d</td>', history)
    assert not re.search(r"\d{4}-\d\d-\d\dT\d\d", history)  # no ISO timestamps
    card = html.split('id="model-card"')[1].split("</section>")[0]
    assert "<h1>Lab model</h1>" in card and "<strong>questions</strong>" in card
    assert "# Lab model" not in card and "<script>" not in card
    assert 'id="export-progress"' in html and "js/registry_version.js" in html
    assert '<span class="badge staging" id="stage">Staging</span>' in html
    listed = client.get("/models/").content.decode()
    assert not re.search(r"\d{4}-\d\d-\d\dT\d\d", listed)
