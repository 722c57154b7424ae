"""The registry API: list, detail, promote (with the gate's 409), sign-off, card, export download."""

from __future__ import annotations

import io
import tarfile

import pytest

from models_registry.services import model_version_auto_create

pytestmark = pytest.mark.django_db


@pytest.fixture
def version(make_config, succeeded_job):
    return model_version_auto_create(job=succeeded_job(make_config()))


def _url(version, tail: str = "") -> str:
    return f"/models/{version.model_id}/versions/{version.version}{tail}"


def test_list_and_detail(api, researcher, version):
    listed = api.get(researcher, "/models").json()
    assert listed == [
        {
            "model_id": "t4dm-knowledge",
            "owner": "rita",
            "description": "",
            "versions": 1,
            "latest_version": "1.0.0",
            "base_model": "t4dm-tiny",
            "production_version": None,
            "updated_at": version.created_at.isoformat(),
        }
    ]
    detail = api.get(researcher, _url(version)).json()
    assert detail["training"]["config"] == version.config.public_id
    assert [step["kind"] for step in detail["lineage"]] == [
        "dataset",
        "config",
        "job",
        "checkpoint",
        "evaluation",
        "version",
    ]
    assert detail["gate"]["passed"] is False


def test_someone_elses_version_is_not_found(api, make_user, version):
    other = make_user("olga")
    assert api.get(other, _url(version)).status_code == 404
    assert api.get(other, "/models").json() == []


def test_promotion_refused_by_the_gate_lists_the_failing_items(api, researcher, version):
    assert (
        api.post(researcher, _url(version, "/stage"), {"stage": "staging", "reason": "try"}).status_code
        == 200
    )
    response = api.post(researcher, _url(version, "/stage"), {"stage": "production"})
    assert response.status_code == 409
    error = response.json()["error"]
    assert error["code"] == "gate_failed"
    assert [item["key"] for item in error["details"]["failing"]] == [
        "metrics_meet_thresholds",
        "comparison_to_base_favourable",
        "sample_outputs_reviewed",
        "model_card_present",  # the card documents no evaluation yet
    ]


def test_signoff_evaluation_and_promotion(api, researcher, make_user, version, finished_evaluation):
    finished_evaluation(version.job)
    api.post(researcher, _url(version, "/stage"), {"stage": "staging"})
    signed = api.post(researcher, _url(version, "/signoff"), {"note": "read them"})
    assert signed.status_code == 201
    admin = make_user("ada", role="admin")  # the second person (settings.PROMOTION_PEOPLE = 2)
    promoted = api.post(
        admin,
        _url(version, "/stage") + "?owner=rita",
        {"stage": "production", "reason": "ship", "thresholds": {"accuracy": 0.9}},
    )
    assert promoted.status_code == 200, promoted.json()
    body = promoted.json()
    assert body["stage"] == "production"
    assert [(h["from_stage"], h["to_stage"]) for h in body["history"]] == [
        ("none", "none"),
        ("none", "staging"),
        ("staging", "production"),
    ]
    assert api.get(researcher, "/models").json()[0]["production_version"] == "1.0.0"


def test_export_and_download_the_archive(api, researcher, version, client):
    created = api.post(researcher, _url(version, "/exports"), {"merge": True})
    assert created.status_code == 201
    export = created.json()
    assert export["merged"] and export["files"] >= 5
    response = client.get(
        "/api/v1" + export["download_url"].removeprefix("/api/v1"),
        headers={"Authorization": f"Bearer {researcher.raw_token}"},
    )
    assert response.status_code == 200
    data = b"".join(response.streaming_content)
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        assert any(name.endswith("MANIFEST.json") for name in tar.getnames())


def test_register_a_job_by_hand_and_edit_the_card(api, researcher, make_config, succeeded_job, client):
    job = succeeded_job(make_config())
    created = api.post(researcher, "/models/versions", {"job_id": job.public_id, "model_id": "t4dm-support"})
    assert created.status_code == 201
    assert (created.json()["model_id"], created.json()["version"], created.json()["created_by"]) == (
        "t4dm-support",
        "1.0.0",
        "rita",
    )
    edited = client.put(
        "/api/v1/models/t4dm-support/versions/1.0.0/model-card",
        {"text": "# t4dm-support\n\nHand-written card for the support bot, long enough."},
        content_type="application/json",
        headers={"Authorization": f"Bearer {researcher.raw_token}"},
    )
    assert edited.status_code == 200
    assert edited.json()["model_card"].startswith("# t4dm-support")


def test_model_thresholds_set_over_the_api_drive_the_gate(
    api, researcher, version, finished_evaluation, client
):
    finished_evaluation(version.job, metrics={"accuracy": 0.8})
    response = client.patch(
        f"/api/v1/models/{version.model_id}",
        {"thresholds": {"accuracy": 0.85}, "limitations": "English only."},
        content_type="application/json",
        headers={"Authorization": f"Bearer {researcher.raw_token}"},
    )
    assert response.status_code == 200
    assert response.json()["thresholds"] == {"accuracy": 0.85}
    gate = api.get(researcher, _url(version, "/gate")).json()
    item = next(i for i in gate["items"] if i["key"] == "metrics_meet_thresholds")
    assert item["passed"] is False and "accuracy=0.8 (needs >= 0.85)" in item["detail"]
    # a request's thresholds add to the model's: they can tighten the gate, never loosen it
    looser = api.get(researcher, _url(version, "/gate"), thresholds='{"accuracy": 0.5}').json()
    assert "metrics_meet_thresholds" in looser["failing"]
    item = next(i for i in looser["items"] if i["key"] == "metrics_meet_thresholds")
    assert "accuracy=0.8 (needs >= 0.85) [model]" in item["detail"]
