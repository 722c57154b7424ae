from __future__ import annotations

from experiments.human_eval.models import HumanEvalAssignment


def test_the_admin_action_reassigns_an_evaluators_remaining_items(admin_client, make_task, evaluators):
    ann = evaluators[0]
    task = make_task(n=6, overlap=1)
    anns = HumanEvalAssignment.objects.filter(task=task, evaluator=ann)
    assert anns.exists()
    response = admin_client.post(
        "/admin/human_eval/humanevalassignment/",
        {"action": "reassign_remaining", "_selected_action": [anns.first().pk]},
        follow=True,
    )
    assert response.status_code == 200 and b"Moved 2 remaining item(s)" in response.content
    assert not HumanEvalAssignment.objects.filter(task=task, evaluator=ann).exists()
    assert task.assignments.count() == 6
