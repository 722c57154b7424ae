"""/human-eval/new/: the browser set-up of a human evaluation calls the same service as the API."""

from __future__ import annotations

import pytest

from experiments.human_eval.models import HumanEvalTask

pytestmark = pytest.mark.django_db


@pytest.fixture
def logged_in(client, researcher, make_user, artifact_root):
    make_user("ann", role="evaluator")
    make_user("bob", role="evaluator")
    client.force_login(researcher)
    return client


def test_the_form_lists_evaluators_models_and_datasets(logged_in):
    page = logged_in.get("/human-eval/new/").content.decode()
    assert 'value="ann"' in page and 'value="bob"' in page
    assert '<option value="t4dm-tiny">' in page
    assert "/human-eval/new/" in logged_in.get("/human-eval/").content.decode()  # linked from the list


def test_typed_questions_with_criteria_guides(logged_in):
    response = logged_in.post("/human-eval/new/", {
        "name": "Round 1", "mode": "rating", "model_a": "t4dm-tiny", "source": "typed",
        "questions": "What is T4DM?\n\nWho trains it?\n",
        "criterion_name": ["accuracy", "tone", ""],
        "criterion_description": ["facts are right", "", ""],
        "criterion_low": ["mostly wrong", "", ""], "criterion_high": ["all correct", "", ""],
        "evaluators": ["ann", "bob"], "overlap": "2", "max_new_tokens": "32",
    })  # fmt: skip
    task = HumanEvalTask.objects.get()
    assert response.status_code == 302 and response["Location"] == f"/human-eval/{task.public_id}/"
    assert task.criteria == ["accuracy", "tone"]
    assert [q["prompt"] for q in task.questions] == ["What is T4DM?", "Who trains it?"]
    assert task.params["criteria_guides"] == {
        "accuracy": {"description": "facts are right", "low": "mostly wrong", "high": "all correct"}
    }
    assert task.overlap == 2 and sorted(u.username for u in task.evaluators.all()) == ["ann", "bob"]


def test_questions_from_a_file(logged_in):
    from django.core.files.uploadedfile import SimpleUploadedFile

    logged_in.post("/human-eval/new/", {
        "mode": "rating", "model_a": "t4dm-tiny", "source": "file", "evaluators": ["ann"],
        "questions_file": SimpleUploadedFile("q.jsonl", b'{"question": "One?"}\n{"prompt": "Two?"}\n'),
    })  # fmt: skip
    assert [q["prompt"] for q in HumanEvalTask.objects.get().questions] == ["One?", "Two?"]


def test_a_refused_setup_shows_the_reason_and_keeps_the_answers(logged_in):
    response = logged_in.post("/human-eval/new/", {
        "name": "Pairs", "mode": "pairwise", "model_a": "t4dm-tiny", "model_b": "", "source": "typed",
        "questions": "Q?", "evaluators": ["ann"],
    })  # fmt: skip
    page = response.content.decode()
    assert response.status_code == 400
    assert 'id="he-error">model_path: required' in page
    assert 'value="Pairs"' in page and 'value="ann" checked' in page
    assert not HumanEvalTask.objects.exists()
