"""The evaluation page in the system Chromium follows the worker's progress over its websocket
(/ws/evaluations/<id>/), with no HTTP polling, and reloads with the result when it finishes
(screenshot of the running page in /tmp/shots)."""

from __future__ import annotations

import re
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from tests.conftest import DEMO_ROWS
from tests.platform import ADMIN_PASSWORD

pytestmark = [pytest.mark.e2e, pytest.mark.browser]

# Samples the progress line every 50 ms into sessionStorage (it survives the reload at the end).
RECORD = """
(() => {
  const seen = JSON.parse(sessionStorage.getItem("seen") || "[]");
  setInterval(() => {
    const bar = document.getElementById("eval-progress");
    const text = document.getElementById("eval-progress-text");
    if (!bar) return;
    const entry = bar.value + " " + (text ? text.textContent : "");
    if (seen[seen.length - 1] !== entry) {
      seen.push(entry);
      sessionStorage.setItem("seen", JSON.stringify(seen));
    }
  }, 50);
})();
"""


def test_the_evaluation_page_follows_progress_over_its_websocket(page, embedded_platform):
    base = embedded_platform.base_url
    with embedded_platform.http() as http:
        with open(DEMO_ROWS, "rb") as handle:
            dataset = http.post(
                "/datasets", files={"file": handle}, data={"task_type": "chat", "split": "10/10/80"}
            )
        assert dataset.status_code == 201, dataset.text
        dataset_id = dataset.json()["dataset_id"]

    page.goto(base + "/login/")
    page.fill("input[name=username]", "admin")
    page.fill("input[name=password]", ADMIN_PASSWORD)
    page.click("button[type=submit]")
    page.wait_for_url(base + "/")

    api_reads: list[str] = []  # GET /api/v1/evaluations/<id> (the finished page's /examples is fine)
    page.on(
        "request",
        lambda request: (
            api_reads.append(request.url)
            if urlsplit(request.url).path.startswith("/api/v1/evaluations/")
            and urlsplit(request.url).path.rstrip("/").split("/")[-2] == "evaluations"
            else None
        ),
    )
    frames: list[str] = []
    page.on(
        "websocket",
        lambda socket: (
            socket.on("framereceived", lambda payload: frames.append(str(payload)))
            if "/ws/evaluations/" in socket.url
            else None
        ),
    )
    page.add_init_script(RECORD)

    with embedded_platform.http() as http:
        created = http.post(
            "/evaluations",
            json={
                "model_path": "t4dm-tiny",
                "test_dataset": dataset_id,
                "metrics": ["perplexity", "bleu", "rouge"],
                "compare_to_base": False,
            },
        )
    assert created.status_code == 202, created.text
    evaluation_id = created.json()["evaluation_id"]
    page.goto(f"{base}/evaluations/{evaluation_id}/")

    Path("/tmp/shots").mkdir(exist_ok=True)
    shot = False
    try:  # a screenshot while it runs, once a progress message has arrived over the socket
        page.wait_for_function("(document.getElementById('eval-progress')?.value || 0) > 0", timeout=60_000)
        page.screenshot(path="/tmp/shots/evaluation_live_running.png", full_page=True)
        shot = True
    except Exception:  # it may finish between two frames: the reload below still shows it
        pass
    # finished: the page reloaded itself with the metrics
    try:
        page.wait_for_selector("text=Metrics", timeout=300_000)
    except Exception:
        with embedded_platform.http() as http:
            now = http.get(f"/evaluations/{evaluation_id}").json()
        seen = page.evaluate("JSON.parse(sessionStorage.getItem('seen') || '[]')")
        raise AssertionError(
            f"the page never showed the result: API says {now['status']} {now['progress']}; "
            f"the page saw {seen}; frames {frames}"
        ) from None
    page.screenshot(path="/tmp/shots/evaluation_live_done.png", full_page=True)

    seen = page.evaluate("JSON.parse(sessionStorage.getItem('seen') || '[]')")
    assert api_reads == [], api_reads  # the page used to GET /api/v1/evaluations/<id> every second
    assert any('"type":"evaluation"' in f.replace(" ", "") for f in frames), frames
    assert any('"status":"succeeded"' in f.replace(" ", "") for f in frames), frames
    assert shot or len(seen) > 1, seen
    assert any(0 < float(entry.split(" ", 1)[0]) < 1 for entry in seen), seen
    # the progress line names the model as the caller did, never the worker's server path
    assert not any("/tmp/" in entry for entry in seen), seen


def test_augment_on_the_dataset_page_follows_its_task_over_its_websocket(page, embedded_platform):
    """The dataset page's Augment follows its worker task over /ws/dataset-tasks/<id>/ (it polled
    GET /api/v1/datasets/tasks/<id> every 0.7 s) and opens the new version when the task ends."""
    from tests.datasets_app.conftest import chat, jsonl

    base = embedded_platform.base_url
    content = DEMO_ROWS.read_bytes().rstrip(b"\n") + b"\n" + jsonl([chat("Which socket?", "The task's.")])
    with embedded_platform.http() as http:
        made = http.post(
            "/datasets", files={"file": ("live-task.jsonl", content)}, data={"task_type": "chat"}
        )
        assert made.status_code == 201, made.text
        dataset_id = made.json()["dataset_id"]
    page.goto(base + "/login/")
    page.fill("input[name=username]", "admin")
    page.fill("input[name=password]", ADMIN_PASSWORD)
    page.click("button[type=submit]")
    page.wait_for_url(base + "/")
    task_reads: list[str] = []
    page.on("request", lambda r: task_reads.append(r.url) if "/api/v1/datasets/tasks/" in r.url else None)
    frames: list[str] = []
    page.on(
        "websocket",
        lambda socket: (
            socket.on("framereceived", lambda payload: frames.append(str(payload)))
            if "/ws/dataset-tasks/" in socket.url
            else None
        ),
    )
    page.goto(f"{base}/datasets/{dataset_id}/")
    page.click("#augment-button")
    page.wait_for_url(re.compile(r".*\?version=2$"), timeout=120_000)
    page.screenshot(path="/tmp/shots/dataset_task_live_done.png", full_page=True)
    assert task_reads == [], task_reads
    assert any('"status":"succeeded"' in f.replace(" ", "") for f in frames), frames
