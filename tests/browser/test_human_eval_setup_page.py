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


def _tag(html: str, marker: str) -> str:
    """The opening tag that carries `marker` (an id or data attribute)."""
    start = html.index(marker)
    return html[html.rindex("<", 0, start) : html.index(">", start) + 1]


def _text(html: str, marker: str) -> str:
    end = html.index(">", html.index(marker)) + 1
    return html[end : html.index("<", end)]


def test_the_page_is_served_in_its_mode_before_any_script_runs(logged_in):
    """The first paint already shows one model for rating and only the chosen question source: the
    second-model field no longer shows until the script hides it (a browser test saw it visible)."""
    page = logged_in.get("/human-eval/new/").content.decode()
    assert " hidden" in _tag(page, 'id="he-model-b-label"')
    assert _text(page, 'id="he-model-a-text"') == "Model" and _text(page, 'class="he-low"') == "1 means"
    assert " hidden" not in _tag(page, 'data-source="typed"')
    assert " hidden" in _tag(page, 'data-source="file"') and " hidden" in _tag(page, 'data-source="dataset"')

    refused = logged_in.post("/human-eval/new/", {
        "mode": "pairwise", "model_a": "t4dm-tiny", "source": "file", "evaluators": ["ann"],
    }).content.decode()  # fmt: skip
    assert " hidden" not in _tag(refused, 'id="he-model-b-label"')
    assert _text(refused, 'id="he-model-a-text"') == "First model"
    assert _text(refused, 'class="he-low"') == "A better means"
    assert " hidden" in _tag(refused, 'data-source="typed"')
    assert " hidden" not in _tag(refused, 'data-source="file"')
