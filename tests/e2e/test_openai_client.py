"""The real `openai` package against a live T4DM: upload, create, list with pagination, retrieve,
events, checkpoints, cancel, and a job that trains the tiny model to `succeeded`."""

from __future__ import annotations

import time

import openai
import pytest
from openai import OpenAI

from tests.conftest import DEMO_ROWS

pytestmark = pytest.mark.e2e

TERMINAL = {"succeeded", "failed", "cancelled"}


def _client(platform) -> OpenAI:
    return OpenAI(base_url=platform.base_url + "/v1", api_key=platform.token, max_retries=0)


def _wait(client: OpenAI, job_id: str, *, timeout: float = 240):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        job = client.fine_tuning.jobs.retrieve(job_id)
        if job.status in TERMINAL:
            return job
        time.sleep(0.5)
    raise AssertionError(f"{job_id} did not finish: {job.status}")


def test_openai_client_trains_the_tiny_model(embedded_platform):
    client = _client(embedded_platform)
    # given: an uploaded chat file
    uploaded = client.files.create(file=("kb.jsonl", DEMO_ROWS.read_bytes()), purpose="fine-tune")
    assert uploaded.id.startswith("file-") and uploaded.purpose == "fine-tune"
    assert client.files.retrieve(uploaded.id).filename == "kb.jsonl"
    assert client.files.content(uploaded.id).content == DEMO_ROWS.read_bytes()
    assert uploaded.id in [f.id for f in client.files.list()]

    # when: a supervised job with explicit hyperparameters, suffix, seed and metadata
    job = client.fine_tuning.jobs.create(
        model="t4dm-tiny",
        training_file=uploaded.id,
        method={
            "type": "supervised",
            "supervised": {
                "hyperparameters": {"n_epochs": 15, "batch_size": 8, "learning_rate_multiplier": 150}
            },
        },
        suffix="kb",
        seed=7,
        metadata={"team": "docs"},
    )
    assert job.id.startswith("ftjob-")
    assert job.status in {"validating_files", "queued", "running"}
    assert job.hyperparameters.n_epochs == 15 and job.seed == 7 and job.metadata == {"team": "docs"}

    # then: it trains to succeeded and names its fine-tuned model
    done = _wait(client, job.id)
    assert done.status == "succeeded", done.error
    assert done.fine_tuned_model == f"ft:t4dm-tiny:org-t4dm:kb:{job.id}"
    assert done.finished_at is not None

    events = client.fine_tuning.jobs.list_events(job.id, limit=100)
    assert all(e.id.startswith("ftevent-") for e in events.data)
    metrics = [e for e in events.data if e.type == "metrics"]
    assert metrics and "train_loss" in metrics[0].data and metrics[0].data["step"] >= 1
    assert any("succeeded" in e.message for e in events.data)
    # pagination over events: small pages walk the same list
    first = client.fine_tuning.jobs.list_events(job.id, limit=2)
    assert first.has_more and len(first.data) == 2
    walked = [e.id for e in client.fine_tuning.jobs.list_events(job.id, limit=7)]  # auto-paginates
    everything = [e.id for e in client.fine_tuning.jobs.list_events(job.id, limit=100)]
    assert walked == everything and len(set(walked)) == len(walked) > 7
    assert walked[:100] == [e.id for e in events.data]

    checkpoints = client.fine_tuning.jobs.checkpoints.list(job.id)
    for checkpoint in checkpoints.data:
        assert checkpoint.id.startswith("ftckpt_") and checkpoint.fine_tuning_job_id == job.id


def test_openai_client_lists_paginates_cancels_and_reports_errors(embedded_platform):
    client = _client(embedded_platform)
    uploaded = client.files.create(file=("kb.jsonl", DEMO_ROWS.read_bytes()), purpose="fine-tune")
    created = [
        client.fine_tuning.jobs.create(
            model="t4dm-tiny", training_file=uploaded.id, hyperparameters={"n_epochs": 200}, suffix=f"c{i}"
        )
        for i in range(3)
    ]
    # cursor pagination: pages of 2 with has_more, then after=<last id>
    page = client.fine_tuning.jobs.list(limit=2)
    assert len(page.data) == 2 and page.has_more
    rest = client.fine_tuning.jobs.list(limit=2, after=page.data[-1].id)
    assert page.data[-1].id not in [j.id for j in rest.data]
    all_ids = [j.id for j in client.fine_tuning.jobs.list(limit=2)]  # the iterator follows the cursor
    assert {j.id for j in created} <= set(all_ids)
    assert client.fine_tuning.jobs.retrieve(created[0].id).user_provided_suffix == "c0"

    for job in created:
        client.fine_tuning.jobs.cancel(job.id)
    assert {_wait(client, j.id).status for j in created} == {"cancelled"}

    # OpenAI error objects, as the package turns them into exceptions
    with pytest.raises(openai.NotFoundError) as missing:
        client.fine_tuning.jobs.retrieve("ftjob-doesnotexist")
    assert missing.value.status_code == 404 and "ftjob-doesnotexist" in missing.value.message
    with pytest.raises(openai.BadRequestError) as bad:
        client.fine_tuning.jobs.create(
            model="t4dm-tiny", training_file=uploaded.id, hyperparameters={"n_epochs": -1}
        )
    assert bad.value.body["param"] == "hyperparameters.n_epochs"
    with pytest.raises(openai.BadRequestError):
        client.files.create(file=("bad.jsonl", b'{"messages": "nope"}\n'), purpose="fine-tune")
    with pytest.raises(openai.AuthenticationError) as unauthorized:
        OpenAI(base_url=embedded_platform.base_url + "/v1", api_key="t4dm_wrong", max_retries=0).files.list()
    assert unauthorized.value.code == "invalid_api_key"
