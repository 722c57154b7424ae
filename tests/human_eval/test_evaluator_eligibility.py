"""Who a researcher may give items to (issue 17, item 13): only active users with the evaluator role —
never an admin, a staff member, a researcher without the role, or the task's owner. Every refused name
gets the very same answer as a name nobody has, so set-up cannot be used to list accounts or roles."""

from __future__ import annotations

import json

import pytest

from experiments.human_eval.models import HumanEvalAssignment, HumanEvalTask
from experiments.human_eval.services import assignments_reassign
from t4dm_site.errors import InvalidInput


@pytest.fixture
def accounts(make_user, researcher):
    from django.contrib.auth import get_user_model

    from t4dm_site.services import role_assign

    eve = make_user("eve", role="evaluator")
    make_user("ada", role="admin")
    make_user("oscar", role="researcher")
    make_user("dora", role="evaluator").__class__.objects.filter(username="dora").update(is_active=False)
    make_user("stan", role="evaluator").__class__.objects.filter(username="stan").update(is_staff=True)
    both = make_user("adele", role="evaluator")
    role_assign(user=both, role="admin")
    get_user_model().objects.create_superuser("root", password="pw-root")
    role_assign(user=get_user_model().objects.get(username="root"), role="evaluator")
    role_assign(user=researcher, role="evaluator")  # the owner, even with the role, cannot rate blind
    return {"eve": eve}


REFUSED = ["nobody", "ada", "oscar", "dora", "stan", "adele", "root", "rita"]


def _setup(api, researcher, evaluators):
    return api.post(researcher, "/human-eval/tasks", {"model_path": "t4dm-tiny", "eval_questions": ["q1", "q2"],
                                                      "evaluators": evaluators})  # fmt: skip


def test_only_evaluators_can_be_assigned_and_every_refusal_reads_the_same(
    api, researcher, accounts, artifact_root
):
    answers = {}
    for name in REFUSED:
        response = _setup(api, researcher, [name])
        assert response.status_code == 400, (name, response.content)
        answers[name] = json.dumps(response.json()).replace(name, "<name>")
    assert len(set(answers.values())) == 1, answers  # nonexistent, inactive, admin, researcher, owner: alike
    error = response.json()["error"]
    assert error["code"] == "unknown_evaluator" and "<name>" in answers["nobody"]
    # alongside a real evaluator, a refused name still refuses the whole set-up, with the same answer
    mixed = _setup(api, researcher, ["eve", "ada"])
    assert mixed.status_code == 400
    assert json.dumps(mixed.json()).replace("ada", "<name>") == answers["nobody"]
    assert not HumanEvalTask.objects.exists()

    response = _setup(api, researcher, ["eve"])
    assert response.status_code == 201, response.content
    assert response.json()["evaluators"] == ["eve"]


def test_the_upload_set_up_refuses_non_evaluators_alike(api, researcher, accounts, artifact_root):
    bodies = set()
    for name in ("nobody", "ada"):
        setup = json.dumps({"model_path": "t4dm-tiny", "evaluators": [name]})
        response = api.upload(
            researcher, "/human-eval/tasks/upload", content=b"q?\n", name="q.txt", setup=setup
        )
        assert response.status_code == 400
        bodies.add(json.dumps(response.json()).replace(name, "<name>"))
    assert len(bodies) == 1 and not HumanEvalTask.objects.exists()


def test_reassignment_never_hands_items_to_someone_who_may_not_evaluate(
    api, researcher, accounts, artifact_root
):
    from django.contrib.auth import get_user_model

    from experiments.human_eval.services import items_create

    response = _setup(api, researcher, ["eve"])
    task = HumanEvalTask.objects.get(pk=int(response.json()["task_id"].split("-")[1]))
    items_create(task=task, outputs=[["x", "y"]])
    admin = get_user_model().objects.get(username="ada")
    with pytest.raises(InvalidInput, match="no other evaluator"):
        assignments_reassign(task=task, from_evaluator=accounts["eve"], to_evaluators=[admin])
    assert set(HumanEvalAssignment.objects.values_list("evaluator__username", flat=True)) == {"eve"}
    assert list(task.evaluators.values_list("username", flat=True)) == ["eve"]


def test_the_admin_task_form_offers_only_evaluators(admin_client, api, researcher, accounts, artifact_root):
    response = _setup(api, researcher, ["eve"])
    pk = int(response.json()["task_id"].split("-")[1])
    page = admin_client.get(f"/admin/human_eval/humanevaltask/{pk}/change/")
    assert page.status_code == 200
    offered = set(
        page.context["adminform"].form.fields["evaluators"].queryset.values_list("username", flat=True)
    )
    assert offered == {"eve", "rita"}  # rita holds the evaluator role too (she may rate others' tasks)
