"""Issue 19: the version page's "Version record" was the seed's JSON schema in a <pre> (braces, quotes,
ids without links). It is a panel people read: base model, the dataset version (a link), the job (a
link), the configuration with its hyperparameters as a table, the evaluations (links), who and when."""

from __future__ import annotations

from pathlib import Path

import pytest

SHOTS = Path("/tmp/export-shots")


def _versioned(researcher, demo_config):
    from experiments.models import Evaluation, EvaluationStatus, TrainingJob
    from models_registry.models import ModelVersion, RegisteredModel

    job = TrainingJob.objects.create(
        owner=researcher, config=demo_config, experiment=demo_config.experiment, status="succeeded"
    )
    evaluation = Evaluation.objects.create(
        owner=researcher,
        model_path="t4dm-record@1.0.0",
        job=job,
        dataset_version=demo_config.dataset_version,
        status=EvaluationStatus.SUCCEEDED,
        metrics={"accuracy": 0.75, "perplexity": 9.5},
    )
    registered = RegisteredModel.objects.get_or_create(owner=researcher, model_id="t4dm-record")[0]
    version = ModelVersion.objects.create(
        registered=registered,
        model_id="t4dm-record",
        version="1.0.0",
        base_model="t4dm-tiny",
        job=job,
        config=demo_config,
        dataset_version=demo_config.dataset_version,
        final_loss=1.2345,
        created_by="rita",
    )
    return version, job, evaluation


@pytest.mark.django_db
def test_the_record_is_a_panel_not_json(client, researcher, demo_config):
    version, job, evaluation = _versioned(researcher, demo_config)
    client.force_login(researcher)
    html = client.get("/models/t4dm-record/1.0.0/").content.decode()
    assert 'id="schema"' not in html  # the raw JSON <pre>
    record = html.split('id="record-title"')[1].split("</section>")[0]
    assert "{" not in record and "}" not in record and "&quot;" not in record
    dv = demo_config.dataset_version
    assert f'href="/datasets/{dv.dataset.public_id}/?version={dv.number}"' in record
    assert f'href="/jobs/{job.public_id}/"' in record
    assert f'href="/evaluations/{evaluation.public_id}/"' in record
    assert "<td>learning_rate</td><td>0.003</td>" in record


@pytest.mark.e2e
@pytest.mark.browser
@pytest.mark.django_db(transaction=True)
def test_the_record_panel_in_the_browser_and_its_links(page, live_server, researcher, demo_config):
    version, job, evaluation = _versioned(researcher, demo_config)
    base = live_server.url
    SHOTS.mkdir(exist_ok=True)
    page.goto(base + "/login/")
    page.fill("input[name=username]", "rita")
    page.fill("input[name=password]", "pw-rita")
    page.keyboard.press("Enter")
    page.wait_for_load_state("networkidle")
    page.goto(f"{base}/models/t4dm-record/1.0.0/")
    panel = page.locator("section:has(#record-title)")
    text = panel.inner_text()
    page.screenshot(path=str(SHOTS / "version_record.png"), full_page=True)
    assert "{" not in text and "}" not in text and '"' not in text
    assert page.locator("#record-base").inner_text() == "t4dm-tiny"
    assert "rita" in page.locator("#record-who").inner_text()
    rows = page.locator("#record-hyperparameters tbody tr").all_inner_texts()
    assert any(r.split() == ["learning_rate", "0.003"] for r in rows), rows
    assert "accuracy 0.75" in page.locator("#record-evaluations").inner_text()
    # the links open the dataset version, the job and the evaluation
    page.click("#record-dataset a")
    page.wait_for_load_state()
    assert page.url.endswith(f"/datasets/{demo_config.dataset_version.dataset.public_id}/?version=1")
    assert demo_config.dataset_version.dataset.name in page.locator("h1").first.inner_text()
    page.go_back()
    page.click("#record-job a")
    page.wait_for_load_state()
    assert page.url.endswith(f"/jobs/{job.public_id}/")
    assert job.public_id in page.content()
    page.go_back()
    page.click("#record-evaluations a")
    page.wait_for_load_state()
    assert page.url.endswith(f"/evaluations/{evaluation.public_id}/")
    assert evaluation.public_id in page.content()
