"""0002/0003 turn existing assignments' numeric ids (in item order) into random ones, and their ratings
follow them."""

from __future__ import annotations

import pytest
from django.db import connection
from django.db.migrations.executor import MigrationExecutor

BEFORE = [("human_eval", "0001_human_eval_tasks_items_assignments_ratings")]
AFTER = [("human_eval", "0003_rekey_existing_assignments")]


@pytest.mark.django_db(transaction=True)
def test_existing_assignments_get_random_ids_and_keep_their_ratings(make_user):
    eve, rita = make_user("eve", role="evaluator"), make_user("rita")
    executor = MigrationExecutor(connection)
    executor.migrate(BEFORE)
    old = executor.loader.project_state(BEFORE).apps
    Task, Item = old.get_model("human_eval", "HumanEvalTask"), old.get_model("human_eval", "HumanEvalItem")
    Assignment, Rating = (
        old.get_model("human_eval", "HumanEvalAssignment"),
        old.get_model("human_eval", "HumanEvalRating"),
    )
    task = Task.objects.create(owner_id=rita.pk, name="t", mode="pairwise", seed=3)
    for index in range(3):
        item = Item.objects.create(task=task, index=index, prompt=f"p{index}", output_a="a", output_b="b")
        assignment = Assignment.objects.create(task=task, item=item, evaluator_id=eve.pk, position=index)
        if index < 2:
            Rating.objects.create(assignment=assignment, task=task, item=item, evaluator_id=eve.pk,
                                  scores={"overall": "a"})  # fmt: skip
    executor = MigrationExecutor(connection)
    executor.migrate(AFTER)
    from experiments.human_eval.models import HumanEvalAssignment, HumanEvalRating

    ids = list(HumanEvalAssignment.objects.values_list("pk", flat=True))
    assert len(ids) == 3 and not any(i.isdigit() for i in ids) and all(len(i) >= 20 for i in ids)
    assert sorted(HumanEvalRating.objects.values_list("item__prompt", "assignment__item__prompt")) == [
        ("p0", "p0"), ("p1", "p1"),
    ]  # fmt: skip
    MigrationExecutor(connection).migrate(executor.loader.graph.leaf_nodes())
