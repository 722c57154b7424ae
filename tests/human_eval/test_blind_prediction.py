"""The blind-prediction attack (issue 17, item 5): an evaluator's script takes everything it can read —
its assignments as the API hands them out (ids, prompts, outputs, the order of its queue), the rating
page, the task's seed when the researcher shared it — and guesses which model wrote side A. Whatever it
tries, it must do no better than a coin: sides and queue order come from `secrets`, assignment ids are
opaque, and the side mapping stays on the server.

On the old code (sides from `random.Random(seed)`, queue order from `Random(seed + 1)`, ids in item
order) the seed replays below predict every side and recover an unknown seed from the queue order."""

from __future__ import annotations

import random

import pytest

from experiments.human_eval.models import HumanEvalAssignment, HumanEvalTask
from experiments.human_eval.services import items_create

N = 200
# Binomial(200, 0.5): P(outside 70..130) ≈ 2·10⁻⁵ per predictor — a blind evaluator stays inside.
CHANCE = (0.35, 0.65)


def _set_up(api, researcher, tiny_model_dir, *, seed: int | None, evaluators: list[str]) -> HumanEvalTask:
    body = {"models": ["t4dm-tiny", str(tiny_model_dir)], "mode": "pairwise", "overlap": 1,
            "eval_questions": [f"Question {k}?" for k in range(N)], "evaluators": evaluators}  # fmt: skip
    if seed is not None:
        body["seed"] = seed
    response = api.post(researcher, "/human-eval/tasks", body)
    assert response.status_code == 201, response.content
    task = HumanEvalTask.objects.get(pk=int(response.json()["task_id"].split("-")[1]))
    items_create(task=task, outputs=[[f"answer {m}-{k}" for k in range(N)] for m in range(2)])
    return task


def _walk_queue(api, client, evaluator, task) -> list[dict]:
    """What the evaluator sees, in the order it sees it: it rates every item (always 'a') to advance."""
    client.force_login(evaluator)
    page = client.get(f"/rate/{task.public_id}/").content.decode()
    seen = []
    while True:
        response = api.get(evaluator, f"/human-eval/queue/{task.public_id}/next")
        assert response.status_code == 200, response.content
        item = response.json()["item"]
        if item is None:
            break
        seen.append({**item, "position": len(seen), "page": page})
        rated = api.post(evaluator, f"/human-eval/assignments/{item['assignment_id']}/rating",
                         {"scores": {"overall": "a"}})  # fmt: skip
        assert rated.status_code == 201, rated.content
    return seen


def _id_rank(seen: list[dict]) -> dict:
    """The attacker's guess of item order from the ids: numeric ids sort as numbers, others as text."""
    ids = sorted((s["assignment_id"] for s in seen), key=lambda i: (len(str(i)), str(i)))
    return {assignment_id: rank for rank, assignment_id in enumerate(ids)}


def _old_sides(seed: int, n: int) -> list[int]:
    rng = random.Random(seed)
    return [rng.randrange(2) for _ in range(n)]


def _recover_seed(order: list[int], n: int, tries: int = 3000) -> int | None:
    """Which seed's `Random(seed + 1).shuffle` yields the queue order the evaluator observed?"""
    for seed in range(tries):
        permutation = list(range(n))
        random.Random(seed + 1).shuffle(permutation)
        if permutation == order:
            return seed
    return None


def _predictors(seen: list[dict], *, known_seed: int) -> dict[str, list[int]]:
    """Each predictor: the model index it believes is shown as side A, per item seen."""
    rank = _id_rank(seen)
    by_prompt = [int(s["prompt"].split()[1].rstrip("?")) for s in seen]
    by_id = [rank[s["assignment_id"]] for s in seen]
    known = _old_sides(known_seed, N)
    order = [0] * len(seen)  # queue position → item index (as derived from the ids)
    for s in seen:
        order[s["position"]] = rank[s["assignment_id"]]
    recovered = _recover_seed(order, N)
    replay = _old_sides(recovered, N) if recovered is not None else [0] * N
    return {
        "seed replay, item index from the prompt": [known[k] for k in by_prompt],
        "seed replay, item index from the id order": [known[k] for k in by_id],
        "seed recovered from the queue order, then replayed": [replay[k] for k in by_id],
        "queue position parity": [s["position"] % 2 for s in seen],
        "id parity / last character": [ord(str(s["assignment_id"])[-1]) % 2 for s in seen],
        "id order parity": [rank[s["assignment_id"]] % 2 for s in seen],
    }


def _accuracies(seen: list[dict], *, known_seed: int) -> dict[str, float]:
    truth = [HumanEvalAssignment.objects.get(pk=s["assignment_id"]).item.model_a for s in seen]
    return {
        name: sum(p == t for p, t in zip(guesses, truth, strict=True)) / len(truth)
        for name, guesses in _predictors(seen, known_seed=known_seed).items()
    }


@pytest.mark.parametrize("seed", [None, 4242], ids=["default-seed", "shared-seed"])
def test_an_evaluator_cannot_predict_which_model_wrote_side_a(
    api, client, researcher, make_user, artifact_root, tiny_model_dir, seed
):
    eve = make_user("eve", role="evaluator")
    task = _set_up(api, researcher, tiny_model_dir, seed=seed, evaluators=["eve"])
    seen = _walk_queue(api, client, eve, task)
    assert len(seen) == N
    # The evaluator knows the seed the researcher used (0 by default, or the one shared with it).
    accuracy = _accuracies(seen, known_seed=seed or 0)
    low, high = CHANCE
    beaten = {name: a for name, a in accuracy.items() if not low <= a <= high}
    assert not beaten, f"an evaluator predicts side A better than chance: {beaten}"
    # Nothing the evaluator reads names the models or the sides.
    secrets = {"model_a", "model_b", "t4dm-tiny", str(tiny_model_dir)}
    assert not any(s in str(item) for item in seen for s in secrets)


def test_the_seed_no_longer_decides_the_sides_or_the_queue(api, client, researcher, make_user, artifact_root,
                                                          tiny_model_dir):  # fmt: skip
    """`seed` is still accepted (old clients send it) and ignored: two tasks set up with the same seed
    get independent sides and queue orders."""
    make_user("eve", role="evaluator")
    first = _set_up(api, researcher, tiny_model_dir, seed=7, evaluators=["eve"])
    second = _set_up(api, researcher, tiny_model_dir, seed=7, evaluators=["eve"])
    sides = [list(t.items.order_by("index").values_list("model_a", flat=True)) for t in (first, second)]
    assert sides[0] != sides[1]
    queues = [
        list(t.assignments.order_by("position").values_list("item__index", flat=True))
        for t in (first, second)
    ]
    assert queues[0] != queues[1]
    # the ids handed to evaluators do not follow item order
    ids = list(first.assignments.order_by("item__index").values_list("pk", flat=True))
    assert ids != sorted(ids, key=lambda i: (len(str(i)), str(i)))
