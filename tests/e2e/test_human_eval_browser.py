"""The rating page in the system Chromium: an evaluator rates five items with the keyboard only, at
phone width, reloads mid-way and continues; a researcher's results page updates as ratings arrive.
Issue 19: a multi-turn question's turns under their roles, the reference answer, the scale's anchors,
going back to a rated item and changing it; blind pairwise stays blind in everything the page loads;
the results page's per-item view and agreement in words, live over its websocket (screenshots in
/tmp/he-shots)."""

from __future__ import annotations

import json
import time
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import pytest

pytestmark = [pytest.mark.e2e, pytest.mark.browser]

SCREENSHOTS = Path("/tmp/he-shots")
SCREENSHOTS.mkdir(exist_ok=True)


@pytest.fixture
def rating_task(transactional_db, make_user, artifact_root):
    from experiments.human_eval.services import human_eval_setup, items_create

    researcher = make_user("rita")
    make_user("ann", role="evaluator")
    task = human_eval_setup(
        owner=researcher,
        model_path="t4dm-tiny",
        eval_questions=[f"Question {k}: what is **T4DM**?" for k in range(5)],
        evaluators=["ann"],
        name="Tiny model answers",
    )
    outputs = [
        [f"Answer {k}\n\n```python\nprint({k})\n```\n<script>window.pwned=1</script>" for k in range(5)]
    ]
    items_create(task=task, outputs=outputs)
    return task


def _log_in(page, base: str, username: str) -> None:
    page.goto(base + "/login/")
    page.fill("input[name=username]", username)
    page.fill("input[name=password]", "pw-" + username)
    page.keyboard.press("Enter")
    page.wait_for_load_state("networkidle")


def _progress(page) -> str:
    return page.locator("#rate-progress-text").inner_text()


def _rate_current(page, keys: str) -> None:
    current = page.locator("#rate").get_attribute("data-assignment")
    for key in keys:
        page.keyboard.press(key)
    page.keyboard.press("n")
    page.wait_for_function(
        f"document.getElementById('rate').dataset.assignment !== '{current}'", timeout=10_000
    )


def test_an_evaluator_rates_five_items_with_the_keyboard_and_resumes(page, browser, live_server, rating_task):
    base = live_server.url
    page.set_viewport_size({"width": 390, "height": 844})
    _log_in(page, base, "ann")
    assert page.url == base + "/rate/"
    page.goto(f"{base}/rate/{rating_task.public_id}/")
    page.wait_for_selector("#rate-item:not([hidden])")
    assert _progress(page) == "0 of 5 rated"
    assert page.locator("#rate-outputs pre code").count() == 1  # markdown code block rendered
    assert page.evaluate("window.pwned") is None  # raw HTML in an output never runs
    page.screenshot(path=str(SCREENSHOTS / "human_eval_rate_phone.png"), full_page=True)
    assert page.evaluate("document.documentElement.scrollWidth") <= 390  # no sideways scrolling

    _rate_current(page, "435")
    _rate_current(page, "524")
    assert _progress(page) == "2 of 5 rated"
    # Half-rate the third item; the draft autosaves; reload.
    third = page.locator("#rate").get_attribute("data-assignment")
    page.keyboard.press("3")
    page.wait_for_function("document.getElementById('rate-save').textContent === 'saved'", timeout=10_000)
    page.reload()
    page.wait_for_selector("#rate-item:not([hidden])")
    assert _progress(page) == "2 of 5 rated"
    assert page.locator("#rate").get_attribute("data-assignment") == third
    assert page.locator("fieldset[data-criterion=accuracy] input[value='3']").is_checked()
    page.screenshot(path=str(SCREENSHOTS / "human_eval_resumed.png"), full_page=True)
    page.keyboard.press("4")  # the highlighted criterion moved on to helpfulness
    page.keyboard.press("4")
    page.keyboard.press("n")
    page.wait_for_function(f"document.getElementById('rate').dataset.assignment !== '{third}'")

    # The researcher watches the results while the last two arrive.
    researcher = browser.new_page()
    _log_in(researcher, base, "rita")
    researcher.goto(f"{base}/human-eval/{rating_task.public_id}/")
    assert researcher.locator("#he-ratings").inner_text() == "3"

    _rate_current(page, "555")
    _rate_current(page, "111")
    page.wait_for_selector("#rate-done:not([hidden])")
    assert _progress(page) == "5 of 5 rated"

    researcher.wait_for_function("document.getElementById('he-ratings').textContent === '5'", timeout=15_000)
    accuracy = researcher.locator("#he-means tr[data-criterion=accuracy] td.mean").inner_text()
    assert accuracy == "3.60"  # 4, 5, 3, 5, 1
    researcher.screenshot(path=str(SCREENSHOTS / "human_eval_results.png"), full_page=True)

    from experiments.human_eval.models import HumanEvalRating

    assert sorted(r.scores["accuracy"] for r in HumanEvalRating.objects.all()) == [1, 3, 4, 5, 5]


# --- issue 19 --------------------------------------------------------------------------------------


def _conversation(k: int) -> dict:
    return {"messages": [
        {"role": "system", "content": "You answer questions about T4DM, briefly."},
        {"role": "user", "content": f"What is T4DM (question {k})?"},
        {"role": "assistant", "content": "A platform to fine-tune language models."},
        {"role": "user", "content": f"And who trains the models (question {k})?"},
        {"role": "assistant", "content": f"Reference {k}: researchers, on the platform's workers."},
    ]}  # fmt: skip


@pytest.fixture
def chat_task(transactional_db, make_user, artifact_root):
    from datasets_app.services import dataset_prepare
    from experiments.human_eval.services import human_eval_setup, items_create

    researcher = make_user("rita")
    make_user("ann", role="evaluator")
    content = "".join(json.dumps(_conversation(k)) + "\n" for k in range(8)).encode()
    version = dataset_prepare(owner=researcher, name="multi-turn", content=content, task_type="chat",
                              split={"train": 0.5, "test": 0.5})  # fmt: skip
    task = human_eval_setup(owner=researcher, model_path="t4dm-tiny", test_dataset=version.dataset.public_id,
                            evaluators=["ann"], name="Multi-turn answers",
                            criteria_guides={"accuracy": {"description": "Are the facts right?",
                                                          "low": "mostly wrong", "high": "all correct"}})  # fmt: skip
    items_create(task=task, outputs=[[f"Model answer {k}." for k in range(len(task.questions))]])
    return task


def _wait_rated(page, value: str) -> None:
    page.wait_for_function(f"document.getElementById('rate').dataset.rated === '{value}'", timeout=10_000)


def test_roles_reference_anchors_and_going_back_to_change_a_rating(page, live_server, chat_task):
    from experiments.human_eval.models import HumanEvalRating

    base = live_server.url
    page.set_viewport_size({"width": 1100, "height": 900})
    _log_in(page, base, "ann")
    page.goto(f"{base}/rate/{chat_task.public_id}/")
    page.wait_for_selector("#rate-item:not([hidden])")
    # each turn under its role, in order, visually distinct
    turns = page.locator("#rate-prompt .turn")
    assert [turns.nth(k).get_attribute("data-role") for k in range(turns.count())] == [
        "system", "user", "assistant", "user"
    ]  # fmt: skip
    roles = page.locator("#rate-prompt .turn .role")
    assert [roles.nth(k).text_content() for k in range(roles.count())] == [
        "System",
        "User",
        "Assistant",
        "User",
    ]
    colours = {turns.nth(k).evaluate("el => getComputedStyle(el).backgroundColor") for k in range(3)}
    assert len(colours) == 3  # system, user and assistant look different
    # the reference answer, and each criterion's description and anchors beside its scale
    assert page.locator("#rate-reference").is_visible()
    assert page.locator("#rate-reference-body").inner_text().startswith("Reference ")
    accuracy = page.locator("fieldset[data-criterion=accuracy]")
    assert accuracy.locator(".guide").inner_text() == "Are the facts right?"
    assert accuracy.locator(".scale .anchor.low").inner_text() == "1 = mostly wrong"
    assert accuracy.locator(".scale .anchor.high").inner_text() == "5 = all correct"
    assert page.locator("fieldset[data-criterion=safety] .scale .anchor.low").inner_text() == "1 = very poor"
    assert page.locator("#rate-previous").is_disabled()
    page.screenshot(path=str(SCREENSHOTS / "rate_multi_turn.png"), full_page=True)

    first = page.locator("#rate").get_attribute("data-assignment")
    _rate_current(page, "444")
    second = page.locator("#rate").get_attribute("data-assignment")
    _rate_current(page, "553")
    total = len(chat_task.questions)
    assert _progress(page) == f"2 of {total} rated"
    third = page.locator("#rate").get_attribute("data-assignment")

    page.keyboard.press("p")  # back to the item rated last, with its rating
    _wait_rated(page, "yes")
    assert page.locator("#rate").get_attribute("data-assignment") == second
    assert page.locator("fieldset[data-criterion=safety] input[value='3']").is_checked()
    assert page.locator("#rate-next").inner_text().startswith("Save change")
    assert page.locator("#rate-skip").is_hidden() and page.locator("#rate-revisit").is_visible()
    page.screenshot(path=str(SCREENSHOTS / "rate_previous_item.png"), full_page=True)
    page.click("#rate-previous")  # and once more: the first item
    page.wait_for_function(f"document.getElementById('rate').dataset.assignment === '{first}'")
    assert page.locator("fieldset[data-criterion=accuracy] input[value='4']").is_checked()
    for key in "222":
        page.keyboard.press(key)
    page.fill("#rate-comment", "on second thought, wrong")
    page.click("#rate-next")  # save the change: on to the item rated after it
    page.wait_for_function(f"document.getElementById('rate').dataset.assignment === '{second}'")
    page.click("#rate-back-to-queue")
    page.wait_for_function(f"document.getElementById('rate').dataset.assignment === '{third}'")
    _wait_rated(page, "")
    assert _progress(page) == f"2 of {total} rated"

    ratings = HumanEvalRating.objects.filter(task=chat_task)
    assert ratings.count() == 2  # changed, not duplicated
    changed = ratings.get(assignment_id=first)
    assert changed.scores == {"accuracy": 2, "helpfulness": 2, "safety": 2}
    assert changed.comment == "on second thought, wrong" and changed.updated_at is not None
    assert ratings.get(assignment_id=second).scores == {"accuracy": 5, "helpfulness": 5, "safety": 3}


@pytest.fixture
def pairwise_task(transactional_db, make_user, artifact_root, tiny_model_dir):
    from experiments.human_eval.services import human_eval_setup, items_create

    researcher = make_user("rita")
    make_user("ann", role="evaluator")
    task = human_eval_setup(owner=researcher, mode="pairwise", models=["t4dm-tiny", str(tiny_model_dir)],
                            eval_questions=[f"Pair question {k}?" for k in range(3)], evaluators=["ann"])  # fmt: skip
    items_create(task=task, outputs=[[f"reply one to {k}" for k in range(3)],
                                     [f"reply two to {k}" for k in range(3)]])  # fmt: skip
    return task


def test_blind_pairwise_stays_blind_in_everything_the_rating_page_loads(page, live_server, pairwise_task):
    base = live_server.url
    secrets = [m["ref"] for m in pairwise_task.model_refs] + [m["path"] for m in pairwise_task.model_refs]
    secrets += ["model_a", "model_b", "tiny-model"]
    bodies: list[str] = []

    def keep(response):
        if urlsplit(response.url).path.startswith(("/rate/", "/api/v1/human-eval/")):
            try:
                bodies.append(response.text())
            except Exception:  # a redirect has no body
                pass

    _log_in(page, base, "ann")
    page.on("response", keep)
    page.goto(f"{base}/rate/{pairwise_task.public_id}/")
    page.wait_for_selector("#rate-item:not([hidden])")
    _rate_current(page, "a")
    page.keyboard.press("p")  # going back loads the item (and its rating) again
    _wait_rated(page, "yes")
    page.keyboard.press("b")
    page.keyboard.press("n")
    page.wait_for_function("document.getElementById('rate').dataset.rated === ''")
    page.screenshot(path=str(SCREENSHOTS / "rate_pairwise_blind.png"), full_page=True)
    bodies.append(page.content())
    attributes = page.evaluate(
        "Array.from(document.querySelectorAll('*')).flatMap(el => Array.from(el.attributes).map(a => a.value)).join(' ')"
    )
    assert len(bodies) >= 5
    for text in [*bodies, attributes]:
        assert not any(s in text for s in secrets), [s for s in secrets if s in text]
    # the sides are shown in the stored order: A left, B right, with no hint which model is which
    assert page.locator("#rate-outputs .output h2").all_inner_texts() == ["A", "B"]

    # The owner's results page says which side won and which model that side was.
    owner = page.context.browser.new_page()
    _log_in(owner, base, "rita")
    owner.goto(f"{base}/human-eval/{pairwise_task.public_id}/")
    item = pairwise_task.items.get(ratings__isnull=False)
    names = [m["ref"] for m in pairwise_task.model_refs]
    shown = owner.locator(f"#he-items .he-item[data-item='{item.index + 1}']")
    assert shown.locator("td[data-criterion=overall]").inner_text() == f"B better → {names[item.model_b]}"
    assert shown.locator("[data-side=A] .model").inner_text() == names[item.model_a]
    assert owner.locator("#he-agreement .agree").first.inner_text() == "not enough ratings"
    owner.set_viewport_size({"width": 1280, "height": 900})
    owner.screenshot(path=str(SCREENSHOTS / "results_pairwise_owner.png"), full_page=True)


def test_the_results_page_shows_items_and_agreement_in_words(page, live_server, chat_task):
    from django.contrib.auth import get_user_model

    from experiments.human_eval.services import rating_submit

    ann = get_user_model().objects.get(username="ann")
    for k, assignment in enumerate(chat_task.assignments.order_by("item__index")[:3]):
        rating_submit(user=ann, assignment_id=assignment.pk, scores={"accuracy": 2 + k, "helpfulness": 4,
                      "safety": 5}, comment=f"comment on item {k + 1}")  # fmt: skip
    base = live_server.url
    page.set_viewport_size({"width": 1280, "height": 900})
    _log_in(page, base, "rita")
    page.goto(f"{base}/human-eval/{chat_task.public_id}/")
    agreement = page.locator("#he-agreement tr[data-criterion=accuracy]")
    assert agreement.locator(".agree").inner_text() == "not enough ratings"  # one evaluator per item
    assert "Krippendorff (2004" in agreement.locator(".agree").get_attribute("title")
    assert agreement.locator(".basis").inner_text() == "no item rated by two evaluators yet"
    first = page.locator("#he-items .he-item").first
    assert first.locator(".turn").count() == 4 and first.locator(".turn[data-role=system]").count() == 1
    assert first.locator(".reference").inner_text().count("Reference") >= 1
    assert first.locator(".output .model").inner_text() == "t4dm-tiny"
    row = first.locator("tr[data-evaluator=ann]")
    assert row.locator("td[data-criterion=accuracy]").inner_text() == "2"
    assert row.locator("td.comment").inner_text() == "comment on item 1"
    assert page.locator("#he-items .he-item").nth(3).locator("text=Not rated yet.").count() == 1
    page.screenshot(path=str(SCREENSHOTS / "results_items_agreement.png"), full_page=True)


def test_the_results_page_updates_over_its_websocket_without_polling(page, embedded_platform):
    """A rating submitted by an evaluator reaches the owner's open results page (no reload, no polling)."""
    setup = """
from django.contrib.auth import get_user_model
from django.db import transaction
from t4dm_site.services import role_assign
from experiments.human_eval.services import human_eval_setup, items_create
users = get_user_model().objects
ann = users.create_user(username="ann19", password="pw-ann19-live")
role_assign(user=ann, role="evaluator")
rita = users.create_user(username="rita19", password="pw-rita19-live")
role_assign(user=rita, role="researcher")
with transaction.atomic():
    task = human_eval_setup(owner=rita, model_path="t4dm-tiny", evaluators=["ann19"], name="Live results",
                            eval_questions=["First question?", "Second question?"])
    items_create(task=task, outputs=[["First answer.", "Second answer."]])
print(task.public_id)
"""
    task_id = embedded_platform.manage("shell", "-c", setup).strip().splitlines()[-1]
    token = embedded_platform.manage("create_api_token", "ann19").strip()
    base = embedded_platform.base_url
    evaluator = httpx.Client(
        base_url=base + "/api/v1", headers={"Authorization": f"Bearer {token}"}, timeout=30
    )

    page.goto(base + "/login/")
    page.fill("input[name=username]", "rita19")
    page.fill("input[name=password]", "pw-rita19-live")
    page.click("button[type=submit]")
    page.wait_for_load_state("networkidle")
    frames: list[str] = []
    page.on("websocket", lambda socket: socket.on("framereceived", lambda payload: frames.append(str(payload)))
            if "/ws/human-eval/" in socket.url else None)  # fmt: skip
    reads: list[str] = []
    page.on(
        "request",
        lambda r: reads.append(r.url) if urlsplit(r.url).path == f"/human-eval/{task_id}/" else None,
    )
    page.goto(f"{base}/human-eval/{task_id}/")
    page.wait_for_function("document.getElementById('he-ratings').textContent === '0'")
    deadline = time.monotonic() + 10
    while not frames and time.monotonic() < deadline:
        page.wait_for_timeout(100)
    assert frames and json.loads(frames[0])["type"] == "human_eval"
    loaded = len(reads)
    page.wait_for_timeout(4000)
    assert len(reads) == loaded  # idle: the page used to fetch itself every 3 s

    item = evaluator.get(f"/human-eval/queue/{task_id}/next").json()["item"]
    rated = evaluator.post(f"/human-eval/assignments/{item['assignment_id']}/rating",
                           json={"scores": {"accuracy": 5, "helpfulness": 4, "safety": 5}, "comment": "spot on"})  # fmt: skip
    assert rated.status_code == 201, rated.text
    page.wait_for_function("document.getElementById('he-ratings').textContent === '1'", timeout=10_000)
    assert page.locator("#he-items td.comment").first.inner_text() == "spot on"
    changed = evaluator.put(f"/human-eval/assignments/{item['assignment_id']}/rating",
                            json={"scores": {"accuracy": 1, "helpfulness": 4, "safety": 5}, "comment": "wrong"})  # fmt: skip
    assert changed.status_code == 200, changed.text
    page.wait_for_function(
        "Array.from(document.querySelectorAll('#he-items td.comment')).some(td => td.textContent === 'wrong')",
        timeout=10_000,
    )
    assert page.locator("#he-means tr[data-criterion=accuracy] td.mean").inner_text() == "1.00"
    assert len(frames) >= 3 and len(reads) <= loaded + 2  # one read of the page per change, no polling
    page.screenshot(path=str(SCREENSHOTS / "results_live.png"), full_page=True)
