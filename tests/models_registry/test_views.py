"""Registry pages through the Django test client."""

from __future__ import annotations

import pytest

from models_registry.services import model_version_auto_create

pytestmark = pytest.mark.django_db


@pytest.fixture
def version(make_config, succeeded_job):
    return model_version_auto_create(job=succeeded_job(make_config()))


def test_models_list_and_version_page(client, researcher, version):
    client.force_login(researcher)
    listed = client.get("/models/").content.decode()
    assert "t4dm-knowledge" in listed and "1.0.0" in listed
    page = client.get("/models/t4dm-knowledge/1.0.0/").content.decode()
    for text in (
        "Lineage",
        "Deployment gate",
        "Stage history",
        version.job.public_id,
        "Dataset properly validated",
    ):
        assert text in page


def test_promote_refused_shows_the_failing_items_then_history(client, researcher, version):
    client.force_login(researcher)
    client.post("/models/t4dm-knowledge/1.0.0/stage/", {"stage": "staging", "reason": "team test"})
    page = client.post(
        "/models/t4dm-knowledge/1.0.0/stage/", {"stage": "production"}, follow=True
    ).content.decode()
    assert (
        "Failing checks: Evaluation metrics meet thresholds, Comparison to base model favourable, "
        "Sample outputs reviewed, Documentation (model card) updated." in page
    )
    assert "team test" in page
    version.refresh_from_db()
    assert version.stage == "staging"


def test_evaluator_gets_403(client, make_user, version):
    client.force_login(make_user("eve", role="evaluator"))
    assert client.get("/models/").status_code == 403


def test_other_users_version_is_404(client, make_user, version):
    client.force_login(make_user("olga"))
    assert client.get("/models/t4dm-knowledge/1.0.0/").status_code == 404


def test_evaluate_and_compare_versions_start_evaluations(
    client, researcher, version, make_config, succeeded_job, django_capture_on_commit_callbacks
):
    from experiments.models import Evaluation

    client.force_login(researcher)
    with django_capture_on_commit_callbacks(execute=False):  # the evaluation worker is not under test
        response = client.post("/models/t4dm-knowledge/1.0.0/evaluate/")
    evaluation = Evaluation.objects.get()
    assert response.status_code == 302 and response.url == f"/evaluations/{evaluation.public_id}/"
    assert (evaluation.kind, evaluation.job) == ("evaluate", version.job)

    model_version_auto_create(job=succeeded_job(make_config(lora_r=8)))
    page = client.get("/models/t4dm-knowledge/").content.decode()
    assert 'id="compare-versions"' in page
    with django_capture_on_commit_callbacks(execute=False):
        response = client.post(
            "/models/t4dm-knowledge/compare/", {"version_a": "1.0.0", "version_b": "1.0.1"}
        )
    comparison = Evaluation.objects.get(kind="compare_versions")
    assert response.url == f"/evaluations/{comparison.public_id}/"
