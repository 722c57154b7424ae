"""/v1/files off the web process (issue 17, staying up): the upload is streamed to a private file; above
T4DM_SYNC_PREPARE_BYTES the dataset worker prepares it and the file object says so as OpenAI's does
(status "uploaded", then "processed" or "error" with status_details). The worker side runs here
in-process through the Celery task function, as the datasets-queue worker would run it. The real `openai`
package reads the file objects through an httpx transport onto Django's test client."""

from __future__ import annotations

import httpx
import openai
import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.test import Client

from datasets_app.models import Dataset, DatasetTask
from datasets_app.storage import datasets_root
from experiments.openai_compat.models import OpenAIFile
from experiments.openai_compat.tasks import file_prepare_task
from tests.datasets_app.conftest import distinct_chat_rows, jsonl


@pytest.fixture
def threshold(settings):
    settings.SYNC_PREPARE_BYTES = 2_000
    return settings.SYNC_PREPARE_BYTES


def _headers(user) -> dict:
    return {"Authorization": f"Bearer {user.raw_token}"}


def _upload(client, user, content: bytes, name: str = "train.jsonl"):
    return client.post(
        "/v1/files",
        {"file": SimpleUploadedFile(name, content), "purpose": "fine-tune"},
        headers=_headers(user),
    )


def _get(client, user, path: str):
    return client.get(f"/v1{path}", headers=_headers(user))


def _job(client, user, training_file: str, validation_file: str | None = None):
    body = {"model": "t4dm-tiny", "training_file": training_file}
    if validation_file:
        body["validation_file"] = validation_file
    return client.post("/v1/fine_tuning/jobs", body, content_type="application/json", headers=_headers(user))


def _run_worker(file_id: str) -> None:
    task = DatasetTask.objects.get(kind="prepare", params__openai_file=file_id)
    file_prepare_task(task.pk)  # what the datasets-queue worker runs


def test_a_large_file_is_uploaded_then_processed_by_the_worker(
    client, researcher, artifact_root, threshold, django_capture_on_commit_callbacks
):
    content = jsonl(distinct_chat_rows(40))
    assert len(content) > threshold
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        uploaded = _upload(client, researcher, content)
    assert uploaded.status_code == 200, uploaded.content
    body = uploaded.json()
    assert body["status"] == "uploaded" and body["status_details"] is None and body["bytes"] == len(content)
    assert len(callbacks) == 1  # the enqueue onto the datasets queue, after the commit
    assert Dataset.objects.count() == 0  # nothing parsed or stored by the web request
    kept = datasets_root() / ".openai_files" / body["id"]
    assert kept.read_bytes() == content and kept.stat().st_mode & 0o077 == 0  # private to the service user
    assert bytes(OpenAIFile.objects.get(file_id=body["id"]).content) == b""  # no bytes in the database
    assert _get(client, researcher, f"/files/{body['id']}/content").getvalue() == content

    # a job on the file before the worker ran: 400 naming the file, in OpenAI's error shape
    early = _job(client, researcher, body["id"])
    assert early.status_code == 400, early.content
    error = early.json()["error"]
    assert set(error) == {"message", "type", "param", "code"}
    assert body["id"] in error["message"] and "not ready" in error["message"]
    assert error["param"] == "training_file" and error["type"] == "invalid_request_error"

    _run_worker(body["id"])

    done = _get(client, researcher, f"/files/{body['id']}").json()
    assert done["status"] == "processed" and done["status_details"] is None
    assert Dataset.objects.filter(owner=researcher).count() == 1
    assert _get(client, researcher, "/files").json()["data"][0]["status"] == "processed"
    started = _job(client, researcher, body["id"])
    assert started.status_code == 200, started.content
    assert started.json()["training_file"] == body["id"]


def test_bad_rows_in_a_large_file_end_in_error_with_the_line(client, researcher, artifact_root, threshold):
    rows = jsonl(distinct_chat_rows(40)).splitlines(keepends=True)
    rows.insert(6, b'{"messages": 3}\n')  # line 7
    content = b"".join(rows)
    uploaded = _upload(client, researcher, content).json()
    assert uploaded["status"] == "uploaded"

    _run_worker(uploaded["id"])

    failed = _get(client, researcher, f"/files/{uploaded['id']}").json()
    assert failed["status"] == "error"
    assert "line 7" in failed["status_details"], failed["status_details"]
    assert Dataset.objects.count() == 0
    refused = _job(client, researcher, uploaded["id"])
    assert refused.status_code == 400
    message = refused.json()["error"]["message"]
    assert uploaded["id"] in message and "line 7" in message


def test_a_large_validation_file_must_be_processed_too(client, researcher, artifact_root, threshold):
    train = _upload(client, researcher, jsonl(distinct_chat_rows(4))).json()
    assert train["status"] == "processed"  # small: prepared in the request, as before
    validation = _upload(client, researcher, jsonl(distinct_chat_rows(40)[::-1]), "valid.jsonl").json()
    refused = _job(client, researcher, train["id"], validation["id"])
    assert refused.status_code == 400
    assert refused.json()["error"]["param"] == "validation_file"
    assert validation["id"] in refused.json()["error"]["message"]


def test_a_small_file_is_still_prepared_at_once_and_bad_rows_answer_400(
    client, researcher, artifact_root, threshold
):
    good = _upload(client, researcher, jsonl(distinct_chat_rows(3)))
    assert good.status_code == 200 and good.json()["status"] == "processed"
    assert DatasetTask.objects.count() == 0
    bad = _upload(client, researcher, b'{"messages": 3}\n')
    assert bad.status_code == 400 and "line 1" in bad.json()["error"]["message"]
    assert _get(client, researcher, "/files").json()["data"] == [good.json()]
    assert sorted(p.name for p in (datasets_root() / ".openai_files").iterdir()) == [good.json()["id"]]


def test_another_users_file_is_404_whatever_its_status(
    client, researcher, make_user, artifact_root, threshold
):
    other = make_user("otto")
    uploaded = _upload(client, researcher, jsonl(distinct_chat_rows(40))).json()
    for path in (f"/files/{uploaded['id']}", f"/files/{uploaded['id']}/content"):
        assert _get(client, other, path).status_code == 404
    assert _job(client, other, uploaded["id"]).status_code == 404
    _run_worker(uploaded["id"])
    assert _get(client, other, f"/files/{uploaded['id']}").status_code == 404


class DjangoTransport(httpx.BaseTransport):
    """httpx onto Django's test client, so the real `openai` package talks to this process."""

    def __init__(self, client: Client):
        self.client = client

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        headers = {k: v for k, v in request.headers.items() if k.lower() not in ("host", "content-length")}
        response = self.client.generic(
            request.method,
            request.url.raw_path.decode(),
            data=request.read(),
            content_type=request.headers.get("content-type", ""),
            headers=headers,
        )
        body = b"".join(response.streaming_content) if response.streaming else response.content
        return httpx.Response(response.status_code, headers=dict(response.items()), content=body)


def test_the_openai_client_reads_the_status(client, researcher, artifact_root, threshold):
    sdk = openai.OpenAI(
        base_url="http://testserver/v1",
        api_key=researcher.raw_token,
        max_retries=0,
        http_client=httpx.Client(transport=DjangoTransport(client)),
    )
    content = jsonl(distinct_chat_rows(40))
    uploaded = sdk.files.create(file=("train.jsonl", content), purpose="fine-tune")
    assert isinstance(uploaded, openai.types.FileObject) and uploaded.status == "uploaded"
    with pytest.raises(openai.BadRequestError) as refused:
        sdk.fine_tuning.jobs.create(model="t4dm-tiny", training_file=uploaded.id)
    assert uploaded.id in refused.value.message and refused.value.param == "training_file"

    _run_worker(uploaded.id)

    processed = sdk.files.retrieve(uploaded.id)
    assert processed.status == "processed" and processed.status_details is None
    assert sdk.files.content(uploaded.id).content == content
    assert [f.status for f in sdk.files.list()] == ["processed"]


def test_a_large_file_with_a_bad_name_is_refused_in_the_request(client, researcher, artifact_root, threshold):
    response = _upload(client, researcher, jsonl(distinct_chat_rows(40)), name="y" * 250 + ".jsonl")
    assert response.status_code == 400 and "characters" in response.json()["error"]["message"]
    assert DatasetTask.objects.count() == 0 and OpenAIFile.objects.count() == 0
