"""Issue 19, in the system Chromium against the real platform (ASGI server + Celery worker):

- Export on a version page held the request ~20 s (merge and pack in the web process) with nothing
  but a timer. It queues a worker task now: the page comes back at once, shows the export's state and
  step, then the download link; a failed export shows its error.
- The upload page followed a large upload's prepare task (202 + task) by polling
  GET /api/v1/datasets/tasks/<id> every second. It follows it over /ws/dataset-tasks/<id>/.

Screenshots under /tmp/export-shots."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from tests.platform import ADMIN_PASSWORD

pytestmark = [pytest.mark.e2e, pytest.mark.browser]

SHOTS = Path("/tmp/export-shots")

# Samples the export list every 50 ms into sessionStorage (it survives the redirect after Export).
RECORD = """
(() => {
  setInterval(() => {
    const seen = JSON.parse(sessionStorage.getItem("exports-seen") || "[]");
    for (const item of document.querySelectorAll("#exports li[data-status]")) {
      const entry = item.dataset.export + " " + item.dataset.status + " " + item.textContent.replace(/\\s+/g, " ");
      if (!seen.includes(entry)) seen.push(entry);
    }
    sessionStorage.setItem("exports-seen", JSON.stringify(seen));
  }, 50);
})();
"""


def _log_in(page, base: str) -> None:
    page.goto(base + "/login/")
    page.fill("input[name=username]", "admin")
    page.fill("input[name=password]", ADMIN_PASSWORD)
    page.click("button[type=submit]")
    page.wait_for_url(base + "/")


def test_export_runs_in_the_background_and_the_page_follows_it(page, embedded_platform):
    from tests.e2e.test_training_live import HYPERPARAMS, start_job

    base = embedded_platform.base_url
    SHOTS.mkdir(exist_ok=True)
    job_id = start_job(embedded_platform, hyperparams={**HYPERPARAMS, "epochs": 2})
    with embedded_platform.http() as http:
        deadline = time.monotonic() + 300
        while (status := http.get(f"/jobs/{job_id}").json()["status"]) != "succeeded":
            assert status not in ("failed", "cancelled"), status
            assert time.monotonic() < deadline, "the job did not succeed in time"
            time.sleep(0.5)
        created = http.post("/models/versions", json={"job_id": job_id, "model_id": "t4dm-export"})
        assert created.status_code == 201, created.text
        version = created.json()["version"]
    _log_in(page, base)
    page.add_init_script(RECORD)
    url = f"{base}/models/t4dm-export/{version}/"
    page.goto(url)

    # when: Export (merged); the request only queues it
    started = time.monotonic()
    page.click("#export-form button[type=submit]")
    page.wait_for_url(url + "#exports")
    answered = time.monotonic() - started
    assert answered < 10, f"the Export request took {answered:.1f} s"
    assert "Export started" in page.text_content(".messages")
    try:  # a screenshot while it runs (it may finish between two frames on a fast worker)
        page.wait_for_selector("#exports li[data-status=running] progress", timeout=30_000)
        page.screenshot(path=str(SHOTS / "export_running.png"), full_page=True)
    except Exception:
        pass
    # then: the list follows it to the download link, without a reload
    page.wait_for_selector("#exports li[data-status=succeeded] a.download", timeout=240_000)
    page.screenshot(path=str(SHOTS / "export_done.png"), full_page=True)
    seen = page.evaluate("JSON.parse(sessionStorage.getItem('exports-seen') || '[]')")
    assert any(" queued " in s or " running " in s for s in seen), seen  # it was shown under way
    assert page.locator("#export-form button[type=submit]").is_enabled()
    with page.expect_download() as download:
        page.click("#exports li[data-status=succeeded] a.download")
    assert download.value.suggested_filename == f"t4dm-export-{version}-merged.tar.gz"
    assert Path(download.value.path()).stat().st_size > 1000

    # when: the trained weights go missing, and Export again
    with embedded_platform.http() as http:
        artifact = Path(http.get(f"/models/t4dm-export/versions/{version}").json()["artifact_path"])
    removed = [p for p in artifact.glob("adapter_model.*")]
    assert removed
    for weights in removed:
        weights.unlink()
    page.click("#export-form button[type=submit]")
    page.wait_for_url(url + "#exports")
    # then: the failed export says why; the earlier download stays
    page.wait_for_selector("#exports li[data-status=failed] .export-error", timeout=240_000)
    error = page.text_content("#exports li[data-status=failed] .export-error")
    assert error.strip(), "a failed export shows its error"
    assert page.locator("#exports li[data-status=succeeded] a.download").count() == 1
    page.screenshot(path=str(SHOTS / "export_failed.png"), full_page=True)


def test_a_large_upload_is_followed_over_the_task_socket_not_polled(page, embedded_platform, tmp_path):
    from tests.datasets_app.conftest import chat, jsonl

    base = embedded_platform.base_url
    SHOTS.mkdir(exist_ok=True)
    # above the embedded default's T4DM_SYNC_PREPARE_BYTES (1 MiB): prepared by the dataset worker
    filler = "more words about it " * 30
    rows = [
        chat(f"Question {i}: what is item {i}?", f"Item {i} is number {i}. {filler}") for i in range(1900)
    ]
    source = tmp_path / "large-upload.jsonl"
    source.write_bytes(jsonl(rows))
    assert source.stat().st_size > 1024 * 1024
    _log_in(page, base)
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
    page.goto(base + "/datasets/")
    page.set_input_files("#upload-file", str(source))
    page.select_option("select[name=task_type]", "chat")
    page.click("#upload-button")
    try:  # a screenshot while the worker prepares it (it may finish between two frames)
        page.wait_for_selector("#upload-status[data-task-status=running]", timeout=120_000)
        page.screenshot(path=str(SHOTS / "upload_preparing.png"), full_page=True)
    except Exception:
        pass
    page.wait_for_url(lambda u: "/datasets/ds-" in u, timeout=240_000)
    page.screenshot(path=str(SHOTS / "upload_done.png"), full_page=True)
    assert task_reads == [], task_reads  # it polled GET /api/v1/datasets/tasks/<id> every second
    assert any('"status":"succeeded"' in f.replace(" ", "") for f in frames), frames
