"""The four-eyes rule for production (settings.PROMOTION_PEOPLE): the researcher who ticked "I reviewed
the sample outputs" cannot promote alone; a second person's sign-off (or promotion) lets it through, and
the transition records who signed off and who promoted."""

from __future__ import annotations

import pytest

from models_registry.models import StageTransition
from models_registry.services import model_version_auto_create, model_version_transition

pytestmark = pytest.mark.django_db


@pytest.fixture
def staged(make_config, succeeded_job, researcher, finished_evaluation):
    version = model_version_auto_create(job=succeeded_job(make_config()))
    finished_evaluation(version.job)
    model_version_transition(version=version, to_stage="staging", actor=researcher, reason="review")
    return version


def _url(version, tail: str) -> str:
    return f"/models/{version.model_id}/versions/{version.version}{tail}"


PROMOTE = {"stage": "production", "reason": "ship", "thresholds": {"accuracy": 0.9}}


def test_the_reviewer_cannot_promote_alone(api, researcher, staged):
    # given: the researcher signed off the sample outputs
    assert api.post(researcher, _url(staged, "/signoff"), {"note": "read them"}).status_code == 201
    # when: the same researcher promotes
    refused = api.post(researcher, _url(staged, "/stage"), PROMOTE)
    # then
    assert refused.status_code == 409
    error = refused.json()["error"]
    assert error["code"] == "second_signoff_required"
    assert "signed off by rita; promoted by rita" in error["message"]
    staged.refresh_from_db()
    assert staged.stage == "staging"


def test_a_second_persons_signoff_lets_the_reviewer_promote(api, researcher, make_user, staged):
    admin = make_user("ada", role="admin")  # admins see every owner's models, so they can sign off
    assert api.post(researcher, _url(staged, "/signoff"), {"note": "read them"}).status_code == 201
    assert api.post(admin, _url(staged, "/signoff") + "?owner=rita", {"note": "agree"}).status_code == 201
    promoted = api.post(researcher, _url(staged, "/stage"), PROMOTE)
    assert promoted.status_code == 200, promoted.json()
    last = StageTransition.objects.filter(version=staged).last()
    assert last.to_stage == "production"
    assert {"key": "second_person_signoff", "label": "Second person's sign-off", "passed": True,
            "detail": "signed off by ada, rita; promoted by rita"} in last.gate  # fmt: skip


def test_one_person_may_promote_where_the_setting_says_so(api, researcher, staged, settings):
    settings.PROMOTION_PEOPLE = 1
    api.post(researcher, _url(staged, "/signoff"), {"note": "read them"})
    assert api.post(researcher, _url(staged, "/stage"), PROMOTE).status_code == 200


def test_the_browser_form_obeys_the_same_rule(client, researcher, staged):
    client.force_login(researcher)
    base = f"/models/{staged.model_id}/{staged.version}"
    client.post(base + "/signoff/", {"note": "read them"})
    page = client.post(base + "/stage/", {"stage": "production", "reason": "ship"}, follow=True)
    assert "needs 2 different people" in page.content.decode()
    staged.refresh_from_db()
    assert staged.stage == "staging"
