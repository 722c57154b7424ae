"""The OpenAI-compatible API in-process: shapes, ids, pagination, errors (the live-server test drives it
with the real `openai` package)."""

from __future__ import annotations

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile

from tests.conftest import DEMO_ROWS


@pytest.fixture
def v1(client, researcher, artifact_root):
    headers = {"Authorization": f"Bearer {researcher.raw_token}"}

    class V1:
        def get(self, path, **params):
            return client.get(f"/v1{path}", params, headers=headers)

        def post(self, path, data=None):
            return client.post(f"/v1{path}", data or {}, content_type="application/json", headers=headers)

        def upload(self, content: bytes | None = None, purpose="fine-tune"):
            content = DEMO_ROWS.read_bytes() if content is None else content
            return client.post(
                "/v1/files",
                {"file": SimpleUploadedFile("kb.jsonl", content), "purpose": purpose},
                headers=headers,
            )

    return V1()


def test_upload_list_retrieve_content(v1):
    uploaded = v1.upload()
    assert uploaded.status_code == 200, uploaded.content
    body = uploaded.json()
    assert (
        body["id"].startswith("file-")
        and body["object"] == "file"
        and body["bytes"] == len(DEMO_ROWS.read_bytes())
    )
    assert v1.get("/files").json()["data"][0]["id"] == body["id"]
    assert v1.get(f"/files/{body['id']}").json()["filename"] == "kb.jsonl"
    assert v1.get(f"/files/{body['id']}/content").content == DEMO_ROWS.read_bytes()


def test_a_bad_file_is_refused_with_an_openai_error(v1):
    response = v1.upload(content=b'{"messages": 3}\n')
    assert response.status_code == 400
    assert set(response.json()["error"]) == {"message", "type", "param", "code"}
    assert response.json()["error"]["type"] == "invalid_request_error"


def test_an_oversized_file_is_refused_before_it_is_read(v1, monkeypatch):
    """Issue 17 (staying up): the size is checked from the upload, not after reading it all into memory."""
    from django.core.files.uploadedfile import InMemoryUploadedFile, TemporaryUploadedFile
    from django.core.files.utils import FileProxyMixin

    from experiments.openai_compat import services

    monkeypatch.setattr(services, "MAX_FILE_BYTES", 1000)
    reads = []
    original_read = FileProxyMixin.read  # a property that returns the underlying file's read
    monkeypatch.setattr(
        FileProxyMixin,
        "read",
        property(
            # the server's upload objects only (the test client reads its SimpleUploadedFile to send it)
            lambda self: (
                (type(self) in (InMemoryUploadedFile, TemporaryUploadedFile) and reads.append(self.name))
                or original_read.fget(self)
            )
        ),
    )
    response = v1.upload(content=DEMO_ROWS.read_bytes() * 2)
    assert response.status_code == 400, response.content
    assert "limit is 1000" in response.json()["error"]["message"]
    assert reads == []
    assert v1.get("/files").json()["data"] == []


def test_jobs_create_list_paginate_events_cancel(v1):
    file_id = v1.upload().json()["id"]
    ids = []
    for i in range(3):
        created = v1.post(
            "/fine_tuning/jobs",
            {"model": "t4dm-tiny", "training_file": file_id, "suffix": f"s{i}", "seed": 3, "metadata": {"k": "v"},
             "method": {"type": "supervised", "supervised": {"hyperparameters": {"n_epochs": 2, "batch_size": "auto"}}}},
        )  # fmt: skip
        assert created.status_code == 200, created.content
        job = created.json()
        assert (
            job["id"].startswith("ftjob-")
            and job["status"] == "queued"
            and job["object"] == "fine_tuning.job"
        )
        assert job["hyperparameters"] == {"n_epochs": 2, "batch_size": 4, "learning_rate_multiplier": 1.0}
        assert job["method"]["type"] == "supervised" and job["metadata"] == {"k": "v"} and job["seed"] == 3
        ids.append(job["id"])
    first = v1.get("/fine_tuning/jobs", limit=2).json()
    assert [j["id"] for j in first["data"]] == ids[::-1][:2] and first["has_more"] is True
    rest = v1.get("/fine_tuning/jobs", limit=2, after=first["data"][-1]["id"]).json()
    assert [j["id"] for j in rest["data"]] == [ids[0]] and rest["has_more"] is False

    cancelled = v1.post(f"/fine_tuning/jobs/{ids[0]}/cancel").json()
    assert cancelled["status"] == "cancelled"
    events = v1.get(f"/fine_tuning/jobs/{ids[0]}/events").json()
    assert events["object"] == "list" and all(e["id"].startswith("ftevent-") for e in events["data"])
    assert "cancelled" in events["data"][0]["message"]
    assert v1.get(f"/fine_tuning/jobs/{ids[0]}/checkpoints").json()["data"] == []


@pytest.mark.parametrize(
    ("hyperparameters", "param"),
    [
        ({"n_epochs": 0}, "hyperparameters.n_epochs"),
        ({"learning_rate_multiplier": "fast"}, "hyperparameters.learning_rate_multiplier"),
    ],
)
def test_bad_hyperparameters_name_the_param(v1, hyperparameters, param):
    file_id = v1.upload().json()["id"]
    response = v1.post(
        "/fine_tuning/jobs",
        {"model": "t4dm-tiny", "training_file": file_id, "hyperparameters": hyperparameters},
    )
    assert response.status_code == 400 and response.json()["error"]["param"] == param


def test_other_users_jobs_and_missing_ids_are_404_and_bad_keys_401(v1, client, make_user):
    file_id = v1.upload().json()["id"]
    job_id = v1.post("/fine_tuning/jobs", {"model": "t4dm-tiny", "training_file": file_id}).json()["id"]
    other = make_user("otto")
    response = client.get(
        f"/v1/fine_tuning/jobs/{job_id}", headers={"Authorization": f"Bearer {other.raw_token}"}
    )
    assert response.status_code == 404 and job_id in response.json()["error"]["message"]
    assert v1.get("/files/file-nope").status_code == 404
    unauthorized = client.get("/v1/files", headers={"Authorization": "Bearer t4dm_wrong"})
    assert unauthorized.status_code == 401 and unauthorized.json()["error"]["code"] == "invalid_api_key"


def test_a_validation_file_becomes_the_validation_split(v1):
    from experiments.openai_compat.models import OpenAIFineTuneJob

    rows = DEMO_ROWS.read_bytes().splitlines(keepends=True)
    train_id = v1.upload(content=b"".join(rows[:50])).json()["id"]
    validation_id = v1.upload(content=b"".join(rows[50:])).json()["id"]
    created = v1.post(
        "/fine_tuning/jobs",
        {"model": "t4dm-tiny", "training_file": train_id, "validation_file": validation_id},
    )
    assert created.status_code == 200, created.content
    assert created.json()["validation_file"] == validation_id
    version = OpenAIFineTuneJob.objects.get().job.config.dataset_version
    assert {name: part["rows"] for name, part in version.splits.items() if part.get("rows")} == {
        "train": 50,
        "validation": 10,
    }
