"""The deployment gate: the Quality Checklist computed, failures listed exactly, overrides recorded."""

from __future__ import annotations

import pytest

from models_registry.models import StageTransition
from models_registry.selectors import gate_status
from models_registry.services import (
    GateFailed,
    model_version_auto_create,
    model_version_transition,
    registered_model_update,
    sample_review_signoff,
)

pytestmark = pytest.mark.django_db

ALL_ITEMS = [
    "dataset_validated",
    "training_completed",
    "metrics_meet_thresholds",
    "comparison_to_base_favourable",
    "sample_outputs_reviewed",
    "properly_versioned",
    "model_card_present",
]


@pytest.fixture
def staged(make_config, succeeded_job, researcher):
    def make():
        job = succeeded_job(make_config())
        version = model_version_auto_create(job=job)
        model_version_transition(version=version, to_stage="staging", actor=researcher, reason="review")
        return version, job

    return make


def test_a_fresh_version_fails_exactly_the_items_nobody_did_yet(staged, researcher):
    # given: trained and versioned, but not evaluated and not reviewed
    version, _ = staged()
    # when
    with pytest.raises(GateFailed) as refused:
        model_version_transition(version=version, to_stage="production", actor=researcher)
    # then
    failing = [item["key"] for item in refused.value.details["failing"]]
    assert failing == [
        "metrics_meet_thresholds",
        "comparison_to_base_favourable",
        "sample_outputs_reviewed",
        "model_card_present",  # "Not evaluated yet": the card documents no evaluation
    ]
    assert "Sample outputs reviewed" in refused.value.message
    version.refresh_from_db()
    assert version.stage == "staging"


def test_everything_done_passes_and_promotes(staged, researcher, make_user, finished_evaluation):
    version, job = staged()
    finished_evaluation(job)
    sample_review_signoff(version=version, reviewer=researcher, note="read 20 outputs, fine")
    sample_review_signoff(version=version, reviewer=make_user("sam"), note="a second pair of eyes")
    version.refresh_from_db()  # the finished evaluation re-rendered its card
    status = gate_status(version, thresholds={"accuracy": 0.9, "perplexity": 10})
    assert [item["key"] for item in status["items"]] == ALL_ITEMS
    assert status["passed"], status["failing"]
    model_version_transition(
        version=version, to_stage="production", actor=researcher, reason="ship", thresholds={"accuracy": 0.9}
    )
    last = StageTransition.objects.filter(version=version).last()
    assert (last.to_stage, last.override, len(last.gate)) == ("production", False, 8)
    assert last.gate[-1] == {"key": "second_person_signoff", "label": "Second person's sign-off",
                             "passed": True, "detail": "signed off by rita, sam; promoted by rita"}  # fmt: skip


def test_thresholds_and_an_unfavourable_comparison_are_the_failing_items(
    staged, researcher, finished_evaluation
):
    version, job = staged()
    finished_evaluation(
        job, metrics={"accuracy": 0.7, "perplexity": 12.0}, comparison={"accuracy_delta": "-0.02"}
    )
    sample_review_signoff(version=version, reviewer=researcher, note="ok")
    registered_model_update(
        model_id=version.model_id, thresholds={"accuracy": 0.9, "perplexity": {"max": 10}}
    )
    with pytest.raises(GateFailed) as refused:
        model_version_transition(version=version, to_stage="production", actor=researcher)
    failing = {item["key"]: item["detail"] for item in refused.value.details["failing"]}
    assert list(failing) == ["metrics_meet_thresholds", "comparison_to_base_favourable"]
    assert "accuracy=0.7 (needs >= 0.9)" in failing["metrics_meet_thresholds"]
    assert "perplexity=12 (needs <= 10)" in failing["metrics_meet_thresholds"]
    assert "worse than base on accuracy" in failing["comparison_to_base_favourable"]


def test_the_evaluations_own_thresholds_can_tighten_the_gate_never_loosen_it(
    staged, researcher, finished_evaluation
):
    version, job = staged()
    evaluation = finished_evaluation(job)
    evaluation.thresholds = {"accuracy": {">=": 0.95}}
    evaluation.save()
    item = {i["key"]: i for i in gate_status(version, thresholds={"accuracy": 0.5})["items"]}[
        "metrics_meet_thresholds"
    ]
    assert not item["passed"]
    assert (
        item["detail"]
        == f"{evaluation.public_id}: below threshold: accuracy=0.92 (needs >= 0.95) [evaluation]"
    )


def test_admin_override_is_recorded_with_its_reason(staged, make_user):
    admin = make_user("ada", role="admin")
    version, _ = staged()
    with pytest.raises(Exception, match="needs a reason"):
        model_version_transition(version=version, to_stage="production", actor=admin, override=True)
    model_version_transition(
        version=version, to_stage="production", actor=admin, override=True, reason="hotfix, eval tomorrow"
    )
    last = StageTransition.objects.filter(version=version).last()
    assert (last.actor_name, last.override, last.reason) == ("ada", True, "hotfix, eval tomorrow")
    assert [i["key"] for i in last.gate if not i["passed"]] == [
        "metrics_meet_thresholds",
        "comparison_to_base_favourable",
        "sample_outputs_reviewed",
        "model_card_present",
        "second_person_signoff",  # nobody signed off: the override lifted the four-eyes rule too
    ]


def test_a_failed_dataset_validation_and_a_missing_card_fail_their_items(staged, researcher):
    version, _ = staged()
    dv = version.dataset_version
    dv.validation_status = "failed"
    dv.save()
    version.model_card = ""
    version.save()
    failing = gate_status(version)["failing"]
    assert "dataset_validated" in failing and "model_card_present" in failing
    assert "training_completed" not in failing and "properly_versioned" not in failing


# --- issue 17, item 6: the gate cannot be bypassed --------------------------------------------------


@pytest.fixture
def ready_for_production(staged, researcher, finished_evaluation):
    """A staged version whose evaluation and sign-off are in: only the thresholds decide."""

    def make(metrics: dict, **evaluation_fields):
        version, job = staged()
        evaluation = finished_evaluation(job, metrics=metrics)
        for name, value in evaluation_fields.items():
            setattr(evaluation, name, value)
        evaluation.save()
        sample_review_signoff(version=version, reviewer=researcher, note="read them")
        version.refresh_from_db()
        return version, evaluation

    return make


def test_perplexity_1798_does_not_reach_production_against_a_project_threshold_of_10(
    ready_for_production, researcher, settings, api, make_user
):
    # given: the project says perplexity <= 10; the evaluation carried its own looser threshold and
    # stored a "passed" result for it
    settings.QUALITY_THRESHOLDS = {"perplexity": {"<=": 10}}
    version, evaluation = ready_for_production(
        {"perplexity": 1798.0},
        thresholds={"perplexity": {"<=": 5000}},
        threshold_results=[
            {"metric": "perplexity", "op": "<=", "threshold": 5000, "value": 1798, "passed": True}
        ],
    )
    # when: promoted as the researcher, also with a looser threshold in the request
    url = f"/models/{version.model_id}/versions/{version.version}/stage"
    response = api.post(
        researcher, url, {"stage": "production", "thresholds": {"perplexity": {"max": 2000}}, "reason": "go"}
    )
    # then: refused, on the project's threshold
    assert response.status_code == 409, response.json()
    failing = {i["key"]: i["detail"] for i in response.json()["error"]["details"]["failing"]}
    assert list(failing) == ["metrics_meet_thresholds"]
    assert "perplexity=1798 (needs <= 10) [project]" in failing["metrics_meet_thresholds"]
    version.refresh_from_db()
    assert version.stage == "staging"
    # only an admin override (with a reason, recorded) gets it there
    admin = make_user("ada", role="admin")
    model_version_transition(
        version=version, to_stage="production", actor=admin, override=True, reason="known regression"
    )
    last = StageTransition.objects.filter(version=version).last()
    assert (last.to_stage, last.override) == ("production", True)


def test_a_model_whose_thresholds_cannot_be_met_is_not_promoted(ready_for_production, researcher, client):
    # given: a perfect accuracy, and model thresholds that ask for more than perfect
    version, _ = ready_for_production(
        {"accuracy": 1.0, "perplexity": 2.0},
        threshold_results=[
            {"metric": "accuracy", "op": ">=", "threshold": 0.85, "value": 1.0, "passed": True}
        ],
    )
    patched = client.patch(
        f"/api/v1/models/{version.model_id}", {"thresholds": {"accuracy": {">": 1.0}}},
        content_type="application/json", headers={"Authorization": f"Bearer {researcher.raw_token}"},
    )  # fmt: skip
    assert patched.status_code == 200
    with pytest.raises(GateFailed) as refused:
        model_version_transition(version=version, to_stage="production", actor=researcher, reason="go")
    detail = refused.value.details["failing"][0]["detail"]
    assert "accuracy=1 (needs > 1) [model]" in detail
    version.refresh_from_db()
    assert version.stage == "staging"


def test_a_model_threshold_on_a_metric_the_evaluation_did_not_measure_fails(ready_for_production):
    version, _ = ready_for_production({"perplexity": 2.0})
    registered_model_update(registered=version.registered, thresholds={"bleu": 0.3})
    version.refresh_from_db()
    item = {i["key"]: i for i in gate_status(version)["items"]}["metrics_meet_thresholds"]
    assert not item["passed"] and "bleu (not measured; needs >= 0.3) [model]" in item["detail"]


def test_the_strictest_bound_of_project_model_and_request_applies(ready_for_production, settings):
    settings.QUALITY_THRESHOLDS = {"perplexity": {"<=": 10}}
    version, _ = ready_for_production({"perplexity": 6.0})
    registered_model_update(registered=version.registered, thresholds={"perplexity": {"max": 50}})
    version.refresh_from_db()
    assert gate_status(version)["passed"]  # 6 meets every bound
    tighter = gate_status(version, thresholds={"perplexity": {"<=": 5}})
    assert tighter["failing"] == ["metrics_meet_thresholds"]  # the request's 5 is the strictest


def test_the_card_is_rendered_again_when_an_evaluation_finishes_and_the_gate_reads_its_content(
    staged, researcher
):
    from experiments.models import Evaluation, EvaluationStatus

    version, job = staged()
    assert "Not evaluated yet." in version.model_card
    card_item = {i["key"]: i for i in gate_status(version)["items"]}["model_card_present"]
    assert not card_item["passed"]  # a long card that documents no evaluation is not "updated"
    # when: an evaluation of the version's job runs and finishes
    evaluation = Evaluation.objects.create(
        owner=job.owner, model_path=job.final_model_path, job=job, dataset_version=job.config.dataset_version,
        status=EvaluationStatus.RUNNING,
    )  # fmt: skip
    evaluation.metrics = {"perplexity": 7.25, "rouge": 0.41}
    evaluation.mark_succeeded()
    # then: the card documents it, metric by metric, and the gate's documentation item passes
    version.refresh_from_db()
    assert "Not evaluated yet." not in version.model_card
    assert evaluation.public_id in version.model_card
    assert "- perplexity: 7.25" in version.model_card and "- rouge: 0.41" in version.model_card
    assert version.evaluation_metrics == {"perplexity": 7.25, "rouge": 0.41}
    card_item = {i["key"]: i for i in gate_status(version)["items"]}["model_card_present"]
    assert card_item["passed"], card_item


def test_a_written_card_is_kept_and_the_gate_says_what_it_lacks(staged, api, researcher, finished_evaluation):
    version, job = staged()
    url = f"/models/{version.model_id}/versions/{version.version}/model-card"
    from django.test import Client

    written = "# Support bot\n\nHand-written card: intended for internal support answers only."
    response = Client().put(
        "/api/v1" + url, {"text": written}, content_type="application/json",
        headers={"Authorization": f"Bearer {researcher.raw_token}"},
    )  # fmt: skip
    assert response.status_code == 200
    evaluation = finished_evaluation(job)
    version.refresh_from_db()
    assert version.model_card == written  # not overwritten by the evaluation
    card_item = {i["key"]: i for i in gate_status(version)["items"]}["model_card_present"]
    assert not card_item["passed"]
    assert card_item["detail"] == f"the model card does not mention the evaluation {evaluation.public_id}"
    # regenerating it ({"text": null}) brings the evaluation in
    regenerated = api.get(researcher, url.removesuffix("/model-card")).json()
    assert regenerated["model_card"] == written
    Client().put(
        "/api/v1" + url, {"text": None}, content_type="application/json",
        headers={"Authorization": f"Bearer {researcher.raw_token}"},
    )  # fmt: skip
    version.refresh_from_db()
    assert {i["key"]: i for i in gate_status(version)["items"]}["model_card_present"]["passed"]
