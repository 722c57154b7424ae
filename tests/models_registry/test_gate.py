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


def test_everything_done_passes_and_promotes(staged, researcher, finished_evaluation):
    version, job = staged()
    finished_evaluation(job)
    sample_review_signoff(version=version, reviewer=researcher, note="read 20 outputs, fine")
    version.refresh_from_db()  # the finished evaluation re-rendered its card
    status = gate_status(version, thresholds={"accuracy": 0.9, "perplexity": 10})
    assert [item["key"] for item in status["items"]] == ALL_ITEMS
    assert status["passed"], status["failing"]
    model_version_transition(
        version=version, to_stage="production", actor=researcher, reason="ship", thresholds={"accuracy": 0.9}
    )
    last = StageTransition.objects.filter(version=version).last()
    assert (last.to_stage, last.override, len(last.gate)) == ("production", False, 7)


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
    assert item["detail"] == f"{evaluation.public_id}: below threshold: accuracy=0.92 (needs >= 0.95) [evaluation]"


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
