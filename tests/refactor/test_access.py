"""The sharing rule's one home: owners see their own records, admins everyone's, and another owner's
record answers the same 404 as a missing one."""

from __future__ import annotations

import pytest

from experiments.models import Evaluation
from t4dm_site.access import get_visible, visible
from t4dm_site.errors import NotFound

pytestmark = pytest.mark.django_db


@pytest.fixture
def records(make_user):
    owner, other, admin = make_user("olga"), make_user("oscar"), make_user("ada", role="admin")
    mine = Evaluation.objects.create(owner=owner, model_path="t4dm-tiny")
    theirs = Evaluation.objects.create(owner=other, model_path="t4dm-tiny")
    return owner, admin, mine, theirs


def test_owners_see_their_own_and_admins_all(records):
    owner, admin, mine, theirs = records
    assert list(visible(Evaluation.objects.all(), owner)) == [mine]
    assert set(visible(Evaluation.objects.all(), admin)) == {mine, theirs}


def test_another_owners_record_is_the_same_404_as_a_missing_one(records):
    owner, admin, mine, theirs = records
    assert get_visible(Evaluation.objects.all(), owner, mine.public_id, "evaluation", prefix="eval") == mine
    with pytest.raises(NotFound) as other_owners:
        get_visible(Evaluation.objects.all(), owner, theirs.public_id, "evaluation", prefix="eval")
    with pytest.raises(NotFound) as missing:
        get_visible(Evaluation.objects.all(), owner, "eval-999999", "evaluation", prefix="eval")
    assert other_owners.value.message == f"evaluation {theirs.public_id} does not exist"
    assert missing.value.message == "evaluation eval-999999 does not exist"
    assert (
        get_visible(Evaluation.objects.all(), admin, theirs.public_id, "evaluation", prefix="eval") == theirs
    )


def test_lookups_through_a_relation_with_a_custom_error(records):
    owner, _, mine, theirs = records
    custom = NotFound("No such thing", code="RESOURCE_DOES_NOT_EXIST")
    found = get_visible(
        Evaluation.objects.all(), owner, mine.model_path, "x", lookup="model_path", missing=custom
    )
    assert found == mine
    with pytest.raises(NotFound) as refused:
        get_visible(
            Evaluation.objects.filter(pk=theirs.pk),
            owner,
            "t4dm-tiny",
            "x",
            lookup="model_path",
            missing=custom,
        )
    assert refused.value is custom
