"""Setting up a task, generating outputs on the tiny model, balanced k-overlap assignment."""

from __future__ import annotations

from collections import Counter

import pytest

from experiments.human_eval.models import HumanEvalAssignment, TaskStatus
from experiments.human_eval.services import assignments_reassign, human_eval_generate, human_eval_setup
from t4dm_site.errors import InvalidInput


def test_each_item_goes_to_k_distinct_evaluators_and_loads_are_balanced(make_task):
    task = make_task(n=7, overlap=2)
    per_item = Counter(task.assignments.values_list("item_id", flat=True))
    assert set(per_item.values()) == {2}
    pairs = list(task.assignments.values_list("item_id", "evaluator_id"))
    assert len(pairs) == len(set(pairs))  # nobody has the same item twice
    loads = Counter(task.assignments.values_list("evaluator_id", flat=True))
    assert sum(loads.values()) == 14 and max(loads.values()) - min(loads.values()) <= 1


def test_pairwise_order_is_randomised_per_item_and_recorded(make_task):
    task = make_task(mode="pairwise", n=20, overlap=1)
    lefts = [item.model_a for item in task.items.all()]
    assert set(lefts) == {0, 1}  # both models appear on the left
    for item in task.items.all():
        assert {item.model_a, item.model_b} == {0, 1}
        # output_a is the text of the model recorded on the left
        assert item.output_a == f"answer {item.model_a}-{item.index}"


def test_setup_refuses_bad_requests(researcher, evaluators, artifact_root):
    names = [e.username for e in evaluators]
    with pytest.raises(InvalidInput, match="overlap"):
        human_eval_setup(
            owner=researcher, model_path="t4dm-tiny", eval_questions=["q"], evaluators=names, overlap=4
        )
    with pytest.raises(InvalidInput, match="exactly two"):
        human_eval_setup(
            owner=researcher, models=["t4dm-tiny"], mode="pairwise", eval_questions=["q"], evaluators=names
        )
    with pytest.raises(InvalidInput, match="no evaluator you can assign is named nobody"):
        human_eval_setup(
            owner=researcher, model_path="t4dm-tiny", eval_questions=["q"], evaluators=["nobody"]
        )
    with pytest.raises(InvalidInput, match="not both"):
        human_eval_setup(owner=researcher, model_path="t4dm-tiny", evaluators=names)


def test_questions_can_come_from_a_test_split(demo_config, researcher, evaluators):
    version = demo_config.dataset_version
    task = human_eval_setup(owner=researcher, model_path="t4dm-tiny", test_dataset=version.dataset.public_id,
                            max_questions=3, evaluators=[evaluators[0].username])  # fmt: skip
    assert 1 <= len(task.questions) <= 3
    assert all(q["prompt"] and q["reference"] for q in task.questions)


def test_the_worker_generates_outputs_with_the_tiny_model_and_builds_items(
    researcher, evaluators, artifact_root
):
    task = human_eval_setup(owner=researcher, model_path="t4dm-tiny", eval_questions=["What is T4DM?", "Say hi"],
                            evaluators=[e.username for e in evaluators], overlap=3, max_new_tokens=6)  # fmt: skip
    human_eval_generate(task=task)
    task.refresh_from_db()
    assert task.status == TaskStatus.READY, task.error
    assert task.items.count() == 2 and task.assignments.count() == 6
    assert all(isinstance(item.output_a, str) for item in task.items.all())
    human_eval_generate(task=task)  # a redelivered message changes nothing
    assert task.items.count() == 2


def test_reassigning_moves_only_pending_items_to_someone_without_them(make_task, evaluators):
    ann, bob, cat = evaluators
    task = make_task(n=6, overlap=1)
    ann_items = list(task.assignments.filter(evaluator=ann))
    done = ann_items[0]
    done.status = "done"
    done.save()
    moved = assignments_reassign(task=task, from_evaluator=ann)
    assert moved == len(ann_items) - 1
    assert list(HumanEvalAssignment.objects.filter(evaluator=ann, task=task)) == [done]
    pairs = list(task.assignments.values_list("item_id", "evaluator_id"))
    assert len(pairs) == len(set(pairs))
