"""prepare_dataset off the web process: a source above T4DM_SYNC_PREPARE_BYTES is stored and prepared by
the dataset worker (202 and a task to poll); a small one still answers 201 at once. The worker side runs
here in-process through the Celery task function, as the datasets-queue worker would run it."""

from __future__ import annotations

import json
import re

import httpx
import pytest

from datasets_app.models import Dataset, DatasetTask
from datasets_app.storage import datasets_root
from datasets_app.tasks import prepare_dataset_task
from tests.datasets_app.conftest import chat, distinct_chat_rows, jsonl

SEED_KEYS = {"dataset_id", "format", "task_type", "statistics", "validation", "output_path"}


@pytest.fixture
def threshold(settings):
    settings.SYNC_PREPARE_BYTES = 2_000
    return settings.SYNC_PREPARE_BYTES


def _task_pk(task_id: str) -> int:
    return int(task_id.split("-")[1])


def _leftovers() -> list[str]:
    root = datasets_root()
    if not root.exists():
        return []
    return sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file())


def test_a_large_upload_is_queued_and_prepared_by_the_worker_not_the_web_request(
    api, researcher, artifact_root, threshold, django_capture_on_commit_callbacks
):
    content = jsonl(distinct_chat_rows(40))
    assert len(content) > threshold
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        queued = api.upload(researcher, "/datasets", content=content, name="big.jsonl", task_type="chat")
    assert queued.status_code == 202, queued.content
    body = queued.json()
    assert body["kind"] == "prepare" and body["status"] == "queued" and body["result"] is None
    assert body["dataset_id"] is None and body["source_version"] is None
    assert len(callbacks) == 1  # the enqueue onto the datasets queue, after the commit
    assert Dataset.objects.count() == 0  # nothing parsed or stored by the web request
    kept = _leftovers()
    assert len(kept) == 1 and kept[0].startswith(".uploads/")  # only the stored upload
    assert (datasets_root() / kept[0]).stat().st_mode & 0o077 == 0  # private to the service user

    prepare_dataset_task(_task_pk(body["task_id"]))  # what the datasets-queue worker runs

    done = api.get(researcher, f"/datasets/tasks/{body['task_id']}").json()
    assert done["status"] == "succeeded" and done["progress"] == 1.0 and done["result_version"] == 1
    result = done["result"]
    assert set(result) == SEED_KEYS and result["dataset_id"] == done["dataset_id"]
    assert result["statistics"]["total_samples"] == 40 and result["validation"]["status"] in (
        "passed",
        "warning",
    )
    assert api.get(researcher, f"/datasets/{done['dataset_id']}").json() == result
    dataset = Dataset.objects.get()
    assert dataset.name == "big.jsonl" and dataset.owner == researcher
    assert not any(p.startswith(".uploads/") for p in _leftovers())  # the kept upload is gone


def test_bad_rows_in_a_large_upload_fail_the_task_with_the_line_and_create_nothing(
    api, researcher, artifact_root, threshold, django_capture_on_commit_callbacks
):
    rows = [json.dumps(r) for r in distinct_chat_rows(40)]
    rows[6] = '{"messages": [{"role": "user", "content": "no closing brace"}'
    content = ("\n".join(rows) + "\n").encode()
    with django_capture_on_commit_callbacks(execute=False):
        queued = api.upload(researcher, "/datasets", content=content, name="bad.jsonl")
    assert queued.status_code == 202  # not read in the web request, so not refused there either
    task_id = queued.json()["task_id"]

    prepare_dataset_task(_task_pk(task_id))

    failed = api.get(researcher, f"/datasets/tasks/{task_id}").json()
    assert failed["status"] == "failed" and failed["result"] is None and failed["dataset_id"] is None
    assert failed["error"].startswith("line 7:"), failed["error"]
    assert failed["error_details"]["line"] == 7 and failed["error_details"]["code"]
    assert Dataset.objects.count() == 0
    assert _leftovers() == []  # no half-written version, no staging folder, no kept upload
    # Run again (a redelivered message): the outcome stands, nothing is created.
    prepare_dataset_task(_task_pk(task_id))
    assert Dataset.objects.count() == 0 and DatasetTask.objects.get().status == "failed"


def test_a_small_upload_is_still_prepared_at_once(api, researcher, artifact_root, threshold):
    small = jsonl([chat("Hi?", "Hello."), chat("Bye?", "Goodbye.")])
    assert len(small) <= threshold
    created = api.upload(researcher, "/datasets", content=small, name="small.jsonl")
    assert created.status_code == 201 and set(created.json()) == SEED_KEYS
    bad = b'{"messages": []}\n{"messages": [{"role": "user", "content": "x"}]}\nnot json\n'
    refused = api.upload(researcher, "/datasets", content=bad, name="bad-small.jsonl")
    assert refused.status_code == 400 and refused.json()["error"]["details"]["line"] is not None
    assert DatasetTask.objects.count() == 0


def test_wrong_arguments_of_a_large_upload_are_refused_at_once(api, researcher, artifact_root, threshold):
    content = jsonl(distinct_chat_rows(40))
    for fields, code in (
        ({"format": "xml"}, "unknown_format"),
        ({"task_type": "poetry"}, "unknown_task_type"),
        ({"split": "1/2"}, "invalid_split"),
    ):
        refused = api.upload(researcher, "/datasets", content=content, name="big.jsonl", **fields)
        assert refused.status_code == 400 and refused.json()["error"]["code"] == code, refused.content
    assert DatasetTask.objects.count() == 0 and _leftovers() == []


def test_a_large_import_path_goes_to_the_worker_too(
    api, researcher, artifact_root, import_root, threshold, django_capture_on_commit_callbacks
):
    from django.test import Client

    (import_root / "rows.jsonl").write_bytes(jsonl(distinct_chat_rows(40)))
    client = Client(headers={"Authorization": f"Bearer {researcher.raw_token}"})
    with django_capture_on_commit_callbacks(execute=False):
        queued = client.post("/api/v1/datasets", {"path": "rows.jsonl"})
    assert queued.status_code == 202, queued.content
    task_id = queued.json()["task_id"]
    prepare_dataset_task(_task_pk(task_id))
    done = api.get(researcher, f"/datasets/tasks/{task_id}").json()
    assert done["status"] == "succeeded" and done["result"]["statistics"]["total_samples"] == 40


def test_another_researcher_cannot_see_a_prepare_task(
    api, researcher, make_user, artifact_root, threshold, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=False):
        queued = api.upload(researcher, "/datasets", content=jsonl(distinct_chat_rows(40)), name="mine.jsonl")
    other = make_user("otto")
    assert api.get(other, f"/datasets/tasks/{queued.json()['task_id']}").status_code == 404


@pytest.mark.django_db(transaction=True)
def test_the_sdk_prepare_dataset_waits_for_the_task_and_returns_the_dataset(
    researcher, artifact_root, threshold, tmp_path
):
    """The SDK against the app (WSGI, in-process); Celery runs the queued task eagerly on commit, as the
    worker would, so the SDK sees 202 and then polls the task."""
    from django.core.wsgi import get_wsgi_application
    from t4dm import T4DM, T4DMError

    from t4dm_site.celery import app as celery_app

    seen: list[tuple[str, int]] = []
    sdk = T4DM("http://testserver", token=researcher.raw_token, backoff=0.01)
    sdk._http = httpx.Client(
        base_url="http://testserver/api/v1",
        headers={"Authorization": f"Bearer {researcher.raw_token}"},
        transport=httpx.WSGITransport(app=get_wsgi_application()),
        event_hooks={"response": [lambda r: seen.append((r.request.method, r.status_code))]},
    )
    big = tmp_path / "big.jsonl"
    big.write_bytes(jsonl(distinct_chat_rows(40)))
    bad = tmp_path / "bad.jsonl"
    bad.write_bytes(big.read_bytes() + b"{broken\n")
    eager = celery_app.conf.task_always_eager
    celery_app.conf.task_always_eager = True
    try:
        result = sdk.prepare_dataset(str(big), task_type="chat", poll=0.01)
        assert ("POST", 202) in seen and ("GET", 200) in seen
        assert set(result) == SEED_KEYS and result["dataset_id"].startswith("ds-")
        assert result["statistics"]["total_samples"] == 40
        with pytest.raises(T4DMError) as refused:
            sdk.prepare_dataset(str(bad), task_type="chat", poll=0.01)
        assert refused.value.message.startswith("line 41:") and refused.value.details["line"] == 41
    finally:
        celery_app.conf.task_always_eager = eager
        sdk.close()
    assert Dataset.objects.count() == 1


@pytest.mark.e2e
@pytest.mark.browser
def test_the_upload_page_follows_a_worker_prepared_upload(
    live_server, page, researcher, artifact_root, threshold, tmp_path
):
    """The upload form: a file above the threshold answers 202; the page follows the task and opens the
    dataset, or shows the task's line-numbered refusal. Celery runs the task eagerly on commit here."""
    from t4dm_site.celery import app as celery_app

    good = tmp_path / "big.jsonl"
    good.write_bytes(jsonl(distinct_chat_rows(40)))
    bad = tmp_path / "bad.jsonl"
    bad.write_bytes(good.read_bytes() + b"{broken\n")
    eager = celery_app.conf.task_always_eager
    celery_app.conf.task_always_eager = True
    try:
        page.goto(live_server.url + "/login/")
        page.fill("input[name=username]", researcher.username)
        page.fill("input[name=password]", "pw-" + researcher.username)
        page.click("button[type=submit], input[type=submit]")
        page.goto(live_server.url + "/datasets/")
        page.set_input_files("#upload-file", str(bad))
        page.click("#upload-button")
        page.wait_for_selector("#upload-status.error", timeout=60_000)
        assert page.inner_text("#upload-status").startswith("Refused: line 41:")
        page.goto(live_server.url + "/datasets/")
        page.set_input_files("#upload-file", str(good))
        page.click("#upload-button")
        page.wait_for_url(re.compile(r".*/datasets/ds-\d+/$"), timeout=60_000)
    finally:
        celery_app.conf.task_always_eager = eager
    assert Dataset.objects.count() == 1 and DatasetTask.objects.filter(kind="prepare").count() == 2
