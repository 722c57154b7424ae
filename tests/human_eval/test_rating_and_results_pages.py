"""Issue 19, human evaluation: role labels on multi-turn questions, the reference answer, going back to
a rated item and changing it (updated, not duplicated), agreement in words with what it rests on, the
per-item view of the results page, and its live updates (an outbox read by id over a websocket)."""

from __future__ import annotations

import json

import pytest
from asgiref.sync import sync_to_async
from channels.testing import WebsocketCommunicator
from django.test import override_settings

from datasets_app.services import dataset_prepare
from experiments.human_eval import stats
from experiments.human_eval.models import HumanEvalAssignment, HumanEvalRating, HumanEvalUpdate
from experiments.human_eval.services import human_eval_setup, items_create
from t4dm_site.asgi import application

ALL_FOUR = {"accuracy": 4, "helpfulness": 4, "safety": 4}


def _conversation(k: int) -> dict:
    return {"messages": [
        {"role": "system", "content": "You answer questions about T4DM."},
        {"role": "user", "content": f"What is T4DM ({k})?"},
        {"role": "assistant", "content": "A fine-tuning platform."},
        {"role": "user", "content": f"Who runs it ({k})?"},
        {"role": "assistant", "content": f"Reference answer {k}: the platform team."},
    ]}  # fmt: skip


@pytest.fixture
def chat_task(researcher, evaluators, artifact_root):
    content = "".join(json.dumps(_conversation(k)) + "\n" for k in range(10)).encode()
    version = dataset_prepare(owner=researcher, name="multi-turn", content=content, task_type="chat",
                              split={"train": 0.5, "test": 0.5})  # fmt: skip
    task = human_eval_setup(owner=researcher, model_path="t4dm-tiny", test_dataset=version.dataset.public_id,
                            evaluators=["ann"])  # fmt: skip
    items_create(task=task, outputs=[[f"model answer {k}" for k in range(len(task.questions))]])
    task.refresh_from_db()
    return task


def _put(client, user, path, data):
    return client.put(f"/api/v1{path}", json.dumps(data), content_type="application/json",
                      headers={"Authorization": f"Bearer {user.raw_token}"})  # fmt: skip


def test_a_multi_turn_question_keeps_each_turns_role_and_the_reference(api, chat_task, evaluators):
    item = api.get(evaluators[0], f"/human-eval/queue/{chat_task.public_id}/next").json()["item"]
    assert [t["role"] for t in item["turns"]] == ["system", "user", "assistant", "user"]
    assert "You answer questions about T4DM." in item["turns"][0]["html"]
    assert "Who runs it" in item["turns"][3]["html"]
    assert "Reference answer" in item["reference_html"] and "the platform team" in item["reference_html"]


def test_a_single_question_has_no_turns_and_no_reference(api, make_task, evaluators):
    task = make_task()
    item = api.get(evaluators[0], f"/human-eval/queue/{task.public_id}/next").json()["item"]
    assert item["turns"] == [] and item["reference_html"] == ""


def test_going_back_and_changing_a_rating_updates_it(api, client, make_task, evaluators):
    ann = evaluators[0]
    task = make_task(n=3, overlap=3)
    first = api.get(ann, f"/human-eval/queue/{task.public_id}/next").json()
    assert first["previous"] is None
    first_id = first["item"]["assignment_id"]
    api.post(ann, f"/human-eval/assignments/{first_id}/rating", {"scores": ALL_FOUR, "comment": "ok"})
    second_id = api.get(ann, f"/human-eval/queue/{task.public_id}/next").json()["item"]["assignment_id"]
    api.post(ann, f"/human-eval/assignments/{second_id}/rating", {"scores": ALL_FOUR})
    current = api.get(ann, f"/human-eval/queue/{task.public_id}/next").json()
    assert current["previous"] == second_id  # the item rated last

    back = api.get(ann, f"/human-eval/assignments/{second_id}").json()
    assert back["rating"] == {"scores": ALL_FOUR, "comment": ""}
    assert back["previous"] == first_id and back["next"] is None
    further = api.get(ann, f"/human-eval/assignments/{first_id}").json()
    assert further["previous"] is None and further["next"] == second_id
    assert further["rating"]["comment"] == "ok"

    changed = {"accuracy": 1, "helpfulness": 2, "safety": 3}
    response = _put(
        client, ann, f"/human-eval/assignments/{first_id}/rating", {"scores": changed, "comment": "no"}
    )
    assert response.status_code == 200, response.content
    assert HumanEvalRating.objects.filter(evaluator=ann).count() == 2  # updated, not duplicated
    rating = HumanEvalRating.objects.get(assignment_id=first_id)
    assert rating.scores == changed and rating.comment == "no" and rating.updated_at is not None
    # the order stays the order of rating: going back still finds the same neighbours
    assert api.get(ann, f"/human-eval/assignments/{second_id}").json()["previous"] == first_id
    # a pending item cannot be "changed", a bad score is refused, someone else's item is not found
    pending = current["item"]["assignment_id"]
    assert (
        _put(client, ann, f"/human-eval/assignments/{pending}/rating", {"scores": ALL_FOUR}).status_code
        == 409
    )
    bad = _put(client, ann, f"/human-eval/assignments/{first_id}/rating", {"scores": {"accuracy": 9}})
    assert bad.status_code == 400 and HumanEvalRating.objects.get(assignment_id=first_id).scores == changed
    bob = evaluators[1]
    assert api.get(bob, f"/human-eval/assignments/{first_id}").status_code == 404
    assert (
        _put(client, bob, f"/human-eval/assignments/{first_id}/rating", {"scores": ALL_FOUR}).status_code
        == 404
    )


def test_agreement_in_words_on_krippendorffs_and_landis_kochs_scales():
    assert stats.interpret_alpha(None) == {"label": "not enough ratings", "level": "none"}
    assert stats.interpret_alpha(-0.52)["label"].startswith("worse than chance")
    assert stats.interpret_alpha(0.5)["level"] == "low"
    assert stats.interpret_alpha(0.7)["level"] == "tentative"
    assert stats.interpret_alpha(0.8)["label"] == "reliable"
    assert stats.interpret_kappa(-0.1)["label"].startswith("poor")
    assert stats.interpret_kappa(0.5)["label"] == "moderate"
    assert stats.interpret_kappa(0.9)["label"] == "almost perfect"
    assert stats.agreement_basis([{"x": 1, "y": 2}, {"x": 3}, {"y": 1, "z": 2}]) == {"items": 2, "raters": 3}


def _rate_all(api, user, task, scores_for):
    while True:
        item = api.get(user, f"/human-eval/queue/{task.public_id}/next").json()["item"]
        if item is None:
            return
        api.post(user, f"/human-eval/assignments/{item['assignment_id']}/rating",
                 {"scores": scores_for(item), "comment": f"{user.username} on {item['prompt']}"})  # fmt: skip


def test_the_results_page_interprets_agreement_and_says_what_it_rests_on(api, client, researcher, make_task,
                                                                         evaluators):  # fmt: skip
    ann, bob, _ = evaluators
    task = make_task(n=4, overlap=2, people=[ann, bob])
    client.force_login(researcher)
    page = client.get(f"/human-eval/{task.public_id}/").content.decode()
    assert "not enough ratings" in page and "no item rated by two evaluators yet" in page
    # ann and bob disagree systematically: opposite ends of the scale on every item
    _rate_all(
        api, ann, task, lambda item: {c: 1 + int(item["prompt"].split()[1][0]) % 2 * 4 for c in ALL_FOUR}
    )
    _rate_all(
        api, bob, task, lambda item: {c: 5 - int(item["prompt"].split()[1][0]) % 2 * 4 for c in ALL_FOUR}
    )
    page = client.get(f"/human-eval/{task.public_id}/").content.decode()
    assert "worse than chance" in page
    assert "4 items rated by two or more of 2 evaluators" in page
    assert "Krippendorff (2004" in page  # the convention, in the help text and tooltips


def test_the_results_page_shows_each_item_with_outputs_scores_and_comments(api, client, researcher, chat_task,
                                                                            evaluators):  # fmt: skip
    ann = evaluators[0]
    _rate_all(api, ann, chat_task, lambda item: {"accuracy": 2, "helpfulness": 3, "safety": 5})
    client.force_login(researcher)
    page = client.get(f"/human-eval/{chat_task.public_id}/").content.decode()
    assert 'id="he-items"' in page
    for item in chat_task.items.all():
        assert f"model answer {item.index}" in page
        assert f"ann on {item.prompt}"[:30] in page  # the comment
    assert 'data-role="system"' in page and 'data-role="assistant"' in page
    assert all(f"Reference answer {k}:" in page for k in range(10) if f"({k})?" in page)
    assert '<td data-criterion="accuracy">2</td>' in page and '<td data-criterion="safety">5</td>' in page
    assert "t4dm-tiny" in page  # the owner sees which model gave the output


def test_blind_pairwise_items_say_which_side_won_and_which_model_it_was_for_the_owner(
    api, client, researcher, make_task, evaluators
):
    ann = evaluators[0]
    task = make_task(mode="pairwise", n=2, overlap=1, people=[ann])
    _rate_all(api, ann, task, lambda item: {"overall": "a"})
    client.force_login(researcher)
    page = client.get(f"/human-eval/{task.public_id}/").content.decode()
    names = [m["ref"] for m in task.model_refs]
    for item in task.items.all():
        assert f'A better <span class="model">→ {names[item.model_a]}</span>' in page
    # the evaluator cannot open the results page, nor its socket (below)
    client.force_login(ann)
    assert client.get(f"/human-eval/{task.public_id}/").status_code in (403, 404)


# --- live ------------------------------------------------------------------------------------------

IN_MEMORY = {"default": {"BACKEND": "channels.layers.InMemoryChannelLayer"}}


def _communicator(task, token: str, after: int | None = None) -> WebsocketCommunicator:
    headers = [(b"host", b"127.0.0.1"), (b"origin", b"http://127.0.0.1"),
               (b"authorization", f"Bearer {token}".encode())]  # fmt: skip
    query = "" if after is None else f"?after={after}"
    return WebsocketCommunicator(application, f"/ws/human-eval/{task.public_id}/{query}", headers=headers)


@pytest.mark.django_db(transaction=True)
def test_each_rating_and_change_writes_an_outbox_row(api, client, make_task, evaluators):
    ann = evaluators[0]
    task = make_task(n=2, overlap=3)
    assert list(HumanEvalUpdate.objects.filter(task=task).values_list("kind", flat=True)) == [
        "human_eval.ready"
    ]
    item = api.get(ann, f"/human-eval/queue/{task.public_id}/next").json()["item"]
    api.post(ann, f"/human-eval/assignments/{item['assignment_id']}/rating", {"scores": ALL_FOUR})
    _put(client, ann, f"/human-eval/assignments/{item['assignment_id']}/rating", {"scores": ALL_FOUR})
    rows = list(HumanEvalUpdate.objects.filter(task=task))
    assert [r.kind for r in rows] == ["human_eval.ready", "human_eval.rated", "human_eval.rating_changed"]
    assert rows[-1].payload == {"task_id": task.public_id, "status": "ready", "progress": 1.0, "error": "",
                                "ratings": 1, "kind": "human_eval.rating_changed"}  # fmt: skip
    names = [m["ref"] for m in task.model_refs] + [m["path"] for m in task.model_refs]
    assert not any(n in json.dumps(r.payload) for r in rows for n in names)


@pytest.mark.django_db(transaction=True)
@override_settings(CHANNEL_LAYERS=IN_MEMORY, WS_RECHECK_SECONDS=60, WS_HUMAN_EVAL_FALLBACK_SECONDS=60)
async def test_a_rating_reaches_the_owners_socket_and_evaluators_are_refused(
    researcher, make_task, evaluators
):
    ann = evaluators[0]
    task = await sync_to_async(make_task)(n=2, overlap=3)
    communicator = _communicator(task, researcher.raw_token)
    assert (await communicator.connect())[0]
    first = await communicator.receive_json_from(timeout=5)
    assert first["type"] == "human_eval" and first["human_eval"]["ratings"] == 0
    assert await communicator.receive_nothing(timeout=0.5)

    from experiments.human_eval.services import rating_submit

    assignment = await sync_to_async(lambda: HumanEvalAssignment.objects.filter(evaluator=ann).first())()
    await sync_to_async(rating_submit)(user=ann, assignment_id=assignment.pk, scores=ALL_FOUR)
    message = await communicator.receive_json_from(timeout=5)
    assert message["human_eval"]["ratings"] == 1 and message["id"] > first["id"]
    await communicator.disconnect()

    refused, code = await _communicator(task, ann.raw_token).connect()
    assert not refused and code == 4404


def test_an_uploaded_file_keeps_references_and_conversations(api, researcher, evaluators, artifact_root):
    from experiments.human_eval.models import HumanEvalTask

    setup = json.dumps({"model_path": "t4dm-tiny", "evaluators": ["ann"], "overlap": 1})
    lines = [
        {"question": "What port does the dashboard use?", "reference": "8000 by default."},
        _conversation(7),
        "Plain question?",
    ]
    content = "".join(json.dumps(line) + "\n" for line in lines).encode()
    response = api.upload(
        researcher, "/human-eval/tasks/upload", content=content, name="q.jsonl", setup=setup
    )
    assert response.status_code == 201, response.content
    task = HumanEvalTask.objects.get()
    assert [q["reference"] for q in task.questions] == [
        "8000 by default.",
        "Reference answer 7: the platform team.",
        "",
    ]
    assert [m["role"] for m in task.questions[1]["messages"]] == ["system", "user", "assistant", "user"]
    items_create(task=task, outputs=[["o1", "o2", "o3"]])
    payloads = []
    while (
        item := api.get(evaluators[0], f"/human-eval/queue/{task.public_id}/next").json()["item"]
    ) is not None:
        payloads.append(item)
        api.post(evaluators[0], f"/human-eval/assignments/{item['assignment_id']}/skip")
        if len(payloads) == 3:
            break
    by_prompt = {p["prompt"]: p for p in payloads}
    assert "8000 by default." in by_prompt["What port does the dashboard use?"]["reference_html"]
    assert (
        by_prompt["Plain question?"]["reference_html"] == "" and by_prompt["Plain question?"]["turns"] == []
    )
    bad = b'{"messages": [{"role": "robot", "content": "x"}]}\n'
    response = api.upload(researcher, "/human-eval/tasks/upload", content=bad, name="q.jsonl", setup=setup)
    assert response.status_code == 400 and "line 1" in response.json()["error"]["message"]


def test_the_results_pages_outbox_is_pruned_like_the_others(make_task):
    from datetime import timedelta

    from django.utils import timezone

    from t4dm_site.housekeeping import outbox_models, prune_outboxes
    from t4dm_site.models import OutboxUpdate

    assert issubclass(HumanEvalUpdate, OutboxUpdate) and HumanEvalUpdate in outbox_models()
    task = make_task(n=1, overlap=1)
    old = timezone.now() - timedelta(hours=48)
    for _ in range(3):
        HumanEvalUpdate.objects.create(task=task, kind="human_eval.rated", payload={}, created_at=old)
    newest = HumanEvalUpdate.objects.filter(task=task).order_by("-id").first()
    HumanEvalUpdate.objects.filter(task=task).update(created_at=old)
    assert prune_outboxes(keep_hours=24)["human_eval.HumanEvalUpdate"] == 3
    assert list(HumanEvalUpdate.objects.filter(task=task)) == [newest]  # the cursor a page starts from
