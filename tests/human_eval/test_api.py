"""The evaluator API and its security rules; researchers' set-up, results and exports."""

from __future__ import annotations

import json

import pytest

from experiments.human_eval.models import HumanEvalAssignment, HumanEvalRating


def _next(api, user, task):
    response = api.get(user, f"/human-eval/queue/{task.public_id}/next")
    assert response.status_code == 200, response.content
    return response.json()


def _put(client, user, path, data):
    return client.put(f"/api/v1{path}", json.dumps(data), content_type="application/json",
                      headers={"Authorization": f"Bearer {user.raw_token}"})  # fmt: skip


def test_an_evaluator_gets_an_item_and_submits_a_rating(api, make_task, evaluators):
    ann = evaluators[0]
    task = make_task()
    queue = api.get(ann, "/human-eval/queue").json()["tasks"]
    assert queue[0]["task_id"] == task.public_id and queue[0]["done"] == 0
    item = _next(api, ann, task)["item"]
    response = api.post(ann, f"/human-eval/assignments/{item['assignment_id']}/rating",
                        {"scores": {"accuracy": 4, "helpfulness": 5, "safety": 5}, "comment": "fine"})  # fmt: skip
    assert response.status_code == 201
    after = _next(api, ann, task)
    assert after["progress"]["done"] == 1 and after["item"]["assignment_id"] != item["assignment_id"]


def test_blind_mode_reveals_no_model_identity_anywhere_an_evaluator_can_reach(
    api, client, make_task, evaluators
):
    ann = evaluators[0]
    task = make_task(mode="pairwise")
    secrets = [m["ref"] for m in task.model_refs] + [m["path"] for m in task.model_refs]
    item = _next(api, ann, task)["item"]
    bodies = [
        api.get(ann, "/human-eval/queue").content,
        api.get(ann, f"/human-eval/queue/{task.public_id}/next").content,
        api.post(
            ann, f"/human-eval/assignments/{item['assignment_id']}/draft", {"scores": {"overall": "a"}}
        ).content,
        api.post(
            ann, f"/human-eval/assignments/{item['assignment_id']}/rating", {"scores": {"overall": "a"}}
        ).content,
        # going back to a rated item, and changing it
        api.get(ann, f"/human-eval/assignments/{item['assignment_id']}").content,
        _put(
            client,
            ann,
            f"/human-eval/assignments/{item['assignment_id']}/rating",
            {"scores": {"overall": "b"}},
        ).content,
        api.get(ann, f"/human-eval/queue/{task.public_id}/next").content,
    ]
    client.login(username="ann", password="pw-ann")
    bodies += [client.get("/rate/").content, client.get(f"/rate/{task.public_id}/").content]
    for body in bodies:
        text = body.decode()
        assert not any(s in text for s in secrets), text
        assert "model_a" not in text and "model_b" not in text and "t4dm-tiny" not in text
    assert set(item) == {"assignment_id", "prompt", "prompt_html", "turns", "reference_html", "outputs", "draft",
                         "skips"}  # fmt: skip


def test_an_evaluator_cannot_read_results_exports_or_training_apis(api, make_task, evaluators):
    ann = evaluators[0]
    task = make_task()
    for path in ["/human-eval/tasks", f"/human-eval/tasks/{task.public_id}", f"/human-eval/tasks/{task.public_id}/results",
                 f"/human-eval/tasks/{task.public_id}/export", "/jobs", "/datasets"]:  # fmt: skip
        assert api.get(ann, path).status_code == 403, path
    assert api.post(ann, "/human-eval/tasks", {"evaluators": ["ann"], "model_path": "t4dm-tiny",
                                               "eval_questions": ["q"]}).status_code == 403  # fmt: skip


def test_someone_elses_item_is_not_found_and_unchanged(api, make_task, evaluators, make_user):
    ann, bob, _ = evaluators
    task = make_task(overlap=1)
    bobs = HumanEvalAssignment.objects.filter(evaluator=bob, task=task).first()
    for path, body in [("rating", {"scores": {"accuracy": 1, "helpfulness": 1, "safety": 1}}),
                       ("draft", {"scores": {"accuracy": 1}}), ("skip", None)]:  # fmt: skip
        assert api.post(ann, f"/human-eval/assignments/{bobs.pk}/{path}", body).status_code == 404
    bobs.refresh_from_db()
    assert bobs.status == "pending" and bobs.draft == {} and bobs.skips == 0
    assert not HumanEvalRating.objects.exists()
    # a user with no items in the task cannot open it
    dan = make_user("dan", role="evaluator")
    assert api.get(dan, f"/human-eval/queue/{task.public_id}/next").status_code == 404


def test_an_evaluator_never_sees_other_evaluators_ratings(api, make_task, evaluators):
    ann, bob, _ = evaluators
    task = make_task(overlap=3, n=2)
    first = _next(api, bob, task)["item"]
    api.post(bob, f"/human-eval/assignments/{first['assignment_id']}/rating",
             {"scores": {"accuracy": 2, "helpfulness": 2, "safety": 2}, "comment": "bob-secret-comment"})  # fmt: skip
    text = json.dumps(_next(api, ann, task)) + api.get(ann, "/human-eval/queue").content.decode()
    assert "bob-secret-comment" not in text and "bob" not in text
    assert _next(api, ann, task)["progress"] == {"done": 0, "total": 2}


@pytest.mark.parametrize(
    "scores",
    [
        {"accuracy": 6, "helpfulness": 3, "safety": 3},
        {"accuracy": 0, "helpfulness": 3, "safety": 3},
        {"accuracy": 2.5, "helpfulness": 3, "safety": 3},
        {"accuracy": "5", "helpfulness": 3, "safety": 3},
        {"accuracy": 3, "helpfulness": 3, "safety": 3, "style": 4},
        {"accuracy": 3},
    ],
)
def test_invalid_scores_are_refused_and_change_nothing(api, make_task, evaluators, scores):
    ann = evaluators[0]
    task = make_task()
    item = _next(api, ann, task)["item"]
    response = api.post(ann, f"/human-eval/assignments/{item['assignment_id']}/rating", {"scores": scores})
    assert 400 <= response.status_code < 500
    assert not HumanEvalRating.objects.exists()
    assert HumanEvalAssignment.objects.get(pk=item["assignment_id"]).status == "pending"


def test_pairwise_choices_outside_a_b_tie_are_refused(api, make_task, evaluators):
    ann = evaluators[0]
    task = make_task(mode="pairwise")
    item = _next(api, ann, task)["item"]
    response = api.post(
        ann, f"/human-eval/assignments/{item['assignment_id']}/rating", {"scores": {"overall": 1}}
    )
    assert response.status_code == 400 and not HumanEvalRating.objects.exists()


def test_a_double_submission_is_a_conflict_and_keeps_the_first(api, make_task, evaluators):
    ann = evaluators[0]
    task = make_task()
    item = _next(api, ann, task)["item"]
    url = f"/human-eval/assignments/{item['assignment_id']}/rating"
    assert api.post(ann, url, {"scores": {"accuracy": 4, "helpfulness": 4, "safety": 4}}).status_code == 201
    again = api.post(ann, url, {"scores": {"accuracy": 1, "helpfulness": 1, "safety": 1}})
    assert again.status_code == 409
    assert HumanEvalRating.objects.get().scores == {"accuracy": 4, "helpfulness": 4, "safety": 4}


def test_drafts_autosave_and_resume_and_skip_moves_the_item_last(api, make_task, evaluators):
    ann = evaluators[0]
    task = make_task(n=3, overlap=3)
    first = _next(api, ann, task)["item"]
    api.post(
        ann,
        f"/human-eval/assignments/{first['assignment_id']}/draft",
        {"scores": {"accuracy": 3}, "comment": "hm"},
    )
    resumed = _next(api, ann, task)["item"]
    assert resumed["assignment_id"] == first["assignment_id"]
    assert resumed["draft"] == {"scores": {"accuracy": 3}, "comment": "hm"}
    assert api.post(ann, f"/human-eval/assignments/{first['assignment_id']}/skip").status_code == 200
    assert _next(api, ann, task)["item"]["assignment_id"] != first["assignment_id"]


def test_outputs_are_rendered_as_markdown_with_html_escaped(api, make_task, evaluators):
    ann = evaluators[0]
    evil = "**bold** <script>alert(1)</script> <img src=x onerror=alert(1)>\n\n```python\nprint('hi')\n```"
    task = make_task(n=1, overlap=3, outputs=[[evil]])
    html = _next(api, ann, task)["item"]["outputs"][0]["html"]
    assert "<strong>bold</strong>" in html and "<pre><code" in html
    assert "<script" not in html and "<img" not in html and "&lt;script&gt;" in html


def test_researcher_sets_up_via_the_api_and_reads_results_and_exports(
    api, researcher, evaluators, artifact_root
):
    response = api.post(researcher, "/human-eval/tasks", {"model_path": "t4dm-tiny", "eval_questions": ["q1", "q2"],
                                                          "evaluators": ["ann", "bob"], "overlap": 2})  # fmt: skip
    assert response.status_code == 201, response.content
    body = response.json()
    assert body["status"] == "generating" and body["criteria"] == ["accuracy", "helpfulness", "safety"]
    from experiments.human_eval.models import HumanEvalTask
    from experiments.human_eval.services import items_create

    task = HumanEvalTask.objects.get()
    items_create(task=task, outputs=[["x", "y"]])
    for evaluator, score in ((evaluators[0], 4), (evaluators[1], 5)):
        for _ in range(2):
            item = _next(api, evaluator, task)["item"]
            api.post(evaluator, f"/human-eval/assignments/{item['assignment_id']}/rating",
                     {"scores": {"accuracy": score, "helpfulness": 3, "safety": 5}})  # fmt: skip
    results = api.get(researcher, f"/human-eval/tasks/{task.public_id}/results").json()
    assert results["means"]["accuracy"]["t4dm-tiny"]["mean"] == 4.5
    assert results["means"]["helpfulness"]["t4dm-tiny"]["ci_low"] is not None
    assert [e["done"] for e in results["evaluator_progress"]] == [2, 2]
    assert "krippendorff_alpha" in results["agreement"]["accuracy"]
    csv_text = api.get(
        researcher, f"/human-eval/tasks/{task.public_id}/export", format="csv"
    ).content.decode()
    assert csv_text.splitlines()[0].startswith("task_id,item,evaluator") and len(csv_text.splitlines()) == 13
    jsonl = api.get(researcher, f"/human-eval/tasks/{task.public_id}/export", format="jsonl").content.decode()
    assert json.loads(jsonl.splitlines()[0])["model_a"] == "t4dm-tiny"


def test_pairwise_results_count_wins_by_model_not_by_side(api, researcher, make_task, evaluators):
    task = make_task(mode="pairwise", n=6, overlap=3)
    # Everyone always prefers model 0 (whichever side it was shown on).
    for evaluator in evaluators:
        while (item := _next(api, evaluator, task)["item"]) is not None:
            shown = HumanEvalAssignment.objects.get(pk=item["assignment_id"]).item
            choice = "a" if shown.model_a == 0 else "b"
            api.post(
                evaluator,
                f"/human-eval/assignments/{item['assignment_id']}/rating",
                {"scores": {"overall": choice}},
            )
    results = api.get(researcher, f"/human-eval/tasks/{task.public_id}/results").json()
    names = results["models"]
    assert results["pairwise"]["overall"]["wins"] == {names[0]: 18, names[1]: 0}
    assert results["leaderboard"]["overall"][0]["model"] == names[0]
    assert results["agreement"]["overall"]["percent_agreement"] == 1.0
    assert (
        results["position_bias"]["overall"]["left_wins"] + results["position_bias"]["overall"]["right_wins"]
        == 18
    )
    client_page = api.get(researcher, f"/human-eval/tasks/{task.public_id}")
    assert client_page.status_code == 200


def test_pairwise_preferences_become_a_preference_dataset(api, researcher, make_task, evaluators):
    # given: every evaluator prefers model 0's output, whichever side it is shown on
    task = make_task(mode="pairwise", n=4, overlap=3)
    for evaluator in evaluators:
        while (item := _next(api, evaluator, task)["item"]) is not None:
            shown = HumanEvalAssignment.objects.get(pk=item["assignment_id"]).item
            choice = "a" if shown.model_a == 0 else "b"
            api.post(
                evaluator,
                f"/human-eval/assignments/{item['assignment_id']}/rating",
                {"scores": {"overall": choice}},
            )
    # when
    response = api.post(researcher, f"/human-eval/tasks/{task.public_id}/preference-dataset", {})
    # then
    assert response.status_code == 201, response.content
    body = response.json()
    assert body["task_type"] == "preference" and body["rows"] == 4
    dataset = api.get(researcher, f"/datasets/{body['dataset_id']}").json()
    assert dataset["task_type"] == "preference" and dataset["statistics"]["train_samples"] == 4
    rows = api.get(researcher, f"/datasets/{body['dataset_id']}/versions/1/rows").json()
    assert all(
        r["chosen"].startswith("answer 0-") and r["rejected"].startswith("answer 1-") for r in rows["rows"]
    )
    # a preference dataset cannot be trained on until preference tuning exists: a clear 400
    refused = api.post(researcher, "/configs", {"model_base": "t4dm-tiny", "dataset_id": body["dataset_id"]})
    assert refused.status_code == 400 and "preference" in refused.json()["error"]["message"]


def test_a_rating_task_has_no_preferences_to_export(api, researcher, make_task):
    task = make_task(mode="rating", n=2, overlap=1)
    response = api.post(researcher, f"/human-eval/tasks/{task.public_id}/preference-dataset", {})
    assert response.status_code == 400 and "pairwise" in response.json()["error"]["message"]


def test_questions_can_be_uploaded_with_the_set_up(api, researcher, evaluators, artifact_root):
    from experiments.human_eval.models import HumanEvalTask

    setup = json.dumps({"model_path": "t4dm-tiny", "evaluators": ["ann"], "overlap": 1})
    content = (
        b'{"question": "What port does the dashboard use?"}\n"How do I resume a job?"\nPlain question?\n'
    )
    response = api.upload(
        researcher, "/human-eval/tasks/upload", content=content, name="q.jsonl", setup=setup
    )
    assert response.status_code == 201, response.content
    assert [q["prompt"] for q in HumanEvalTask.objects.get().questions] == [
        "What port does the dashboard use?",
        "How do I resume a job?",
        "Plain question?",
    ]


@pytest.mark.parametrize(
    ("content", "setup", "message"),
    [
        (b'{"question": 3}\n', '{"model_path": "t4dm-tiny", "evaluators": ["ann"]}', "line 1"),
        (b"\xff\xfe\x00bad", '{"model_path": "t4dm-tiny", "evaluators": ["ann"]}', "UTF-8"),
        (b"q?\n", '{"model_path": "t4dm-tiny"}', "setup.evaluators"),
    ],
)
def test_a_bad_upload_is_a_clear_400_and_creates_nothing(
    api, researcher, evaluators, artifact_root, content, setup, message
):
    from experiments.human_eval.models import HumanEvalTask

    response = api.upload(researcher, "/human-eval/tasks/upload", content=content, name="q.txt", setup=setup)
    assert response.status_code == 400 and message in response.json()["error"]["message"]
    assert not HumanEvalTask.objects.exists()


@pytest.mark.parametrize("bad", ["%00abc", "1", "x" * 300, "a.b", "%E2%80%AE"])
def test_a_malformed_or_unknown_assignment_id_is_not_found(api, make_task, evaluators, bad):
    ann = evaluators[0]
    make_task()
    response = api.post(ann, f"/human-eval/assignments/{bad}/draft", {"scores": {"accuracy": 3}})
    assert response.status_code == 404
    assert response.json()["error"]["message"] == "this assignment is not in your queue"
