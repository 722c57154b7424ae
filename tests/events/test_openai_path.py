"""The OpenAI provider path, with the real `openai` client against a mocked HTTP transport: a remote
fine-tuning job that succeeds (or fails) ends the local job with the same effects as a worker's report,
and its version follows auto_version like any other (before, it registered one even with auto_version
off, and sent no webhook and no workflow step)."""

from __future__ import annotations

import httpx
import openai
import pytest
from django.conf import settings as django_settings

from datasets_app.services import dataset_prepare
from experiments.models import JobStatus, MetricPoint
from experiments.providers import openai_provider
from experiments.workflows.models import StepStatus
from tests.conftest import DEMO_ROWS

pytestmark = pytest.mark.django_db

REMOTE_JOB = {
    "id": "ftjob-1",
    "object": "fine_tuning.job",
    "created_at": 1,
    "model": "gpt-4o-mini",
    "organization_id": "org-1",
    "training_file": "file-1",
    "validation_file": None,
    "hyperparameters": {"n_epochs": "auto"},
    "result_files": [],
    "seed": 0,
    "trained_tokens": None,
    "finished_at": None,
    "fine_tuned_model": None,
    "error": None,
}


class FakeOpenAI:
    """The few fine-tuning endpoints finetune_openai and provider_job_sync call."""

    def __init__(self) -> None:
        self.status = "queued"
        self.fine_tuned_model = None
        self.error = None

    def handle(self, request: httpx.Request) -> httpx.Response:
        path = request.url.path.removeprefix("/v1")
        if request.method == "POST" and path == "/files":
            return httpx.Response(
                200,
                json={"id": "file-1", "object": "file", "bytes": 10, "created_at": 1,
                      "filename": "train.jsonl", "purpose": "fine-tune", "status": "processed"},
            )  # fmt: skip
        if path == "/fine_tuning/jobs/ftjob-1/events":
            event = {"id": "ev-1", "object": "fine_tuning.job.event", "created_at": 2, "level": "info",
                     "message": "Step 1/10: training loss=1.50", "type": "metrics",
                     "data": {"step": 1, "train_loss": 1.5}}  # fmt: skip
            return httpx.Response(200, json={"object": "list", "data": [event], "has_more": False})
        if path in ("/fine_tuning/jobs", "/fine_tuning/jobs/ftjob-1"):
            body = {**REMOTE_JOB, "status": self.status, "fine_tuned_model": self.fine_tuned_model}
            if self.error:
                body["error"] = {"code": "invalid_file", "message": self.error, "param": None}
            return httpx.Response(200, json=body)
        return httpx.Response(404, json={"error": {"message": f"no route {request.method} {path}"}})


@pytest.fixture
def remote(settings, monkeypatch):
    settings.OPENAI_BASE_URL = "https://api.openai.test/v1"
    settings.OPENAI_API_KEY = "sk-test"
    fake = FakeOpenAI()

    def client() -> openai.OpenAI:  # the real client library; only its HTTP transport is mocked
        return openai.OpenAI(
            base_url=django_settings.OPENAI_BASE_URL,
            api_key=django_settings.OPENAI_API_KEY,
            http_client=httpx.Client(transport=httpx.MockTransport(fake.handle)),
        )

    monkeypatch.setattr(openai_provider, "client", client)
    return fake


@pytest.fixture
def provider_job(remote, researcher, artifact_root, django_capture_on_commit_callbacks):
    version = dataset_prepare(owner=researcher, name="kb", content=DEMO_ROWS.read_bytes(), task_type="chat")
    with django_capture_on_commit_callbacks(execute=False):
        return openai_provider.finetune_openai(
            owner=researcher, dataset_path=version.dataset.public_id, base_model="gpt-4o-mini", suffix="kb"
        )


def test_a_remote_job_that_succeeds(remote, provider_job, watch, django_capture_on_commit_callbacks):
    watched = watch(provider_job.job)
    remote.status, remote.fine_tuned_model = "succeeded", "ft:gpt-4o-mini:org-1:kb:ftjob-1"
    with django_capture_on_commit_callbacks(execute=True):
        provider_job = openai_provider.provider_job_sync(provider_job=provider_job)
    job = provider_job.job
    assert job.status == JobStatus.SUCCEEDED
    assert MetricPoint.objects.filter(job=job, key="loss", step=1).exists()
    assert watched.webhooks() == ["job.succeeded"]
    assert watched.live_statuses()[-1] == "succeeded"
    assert watched.step_status() == StepStatus.SUCCEEDED
    [version] = watched.versions()
    assert (version.provider, version.artifact_path) == ("openai", "ft:gpt-4o-mini:org-1:kb:ftjob-1")
    assert version.base_model == "gpt-4o-mini"


def test_a_remote_job_follows_auto_version(
    remote, provider_job, watch, settings, django_capture_on_commit_callbacks
):
    watched = watch(provider_job.job)
    settings.T4DM_VERSIONING = {"auto_version": False, "compare_to_base": False}
    remote.status, remote.fine_tuned_model = "succeeded", "ft:gpt-4o-mini:org-1:kb:ftjob-1"
    with django_capture_on_commit_callbacks(execute=True):
        openai_provider.provider_job_sync(provider_job=provider_job)
    assert watched.webhooks() == ["job.succeeded"]
    assert watched.versions() == []


def test_a_remote_job_that_fails(remote, provider_job, watch, django_capture_on_commit_callbacks):
    watched = watch(provider_job.job)
    remote.status, remote.error = "failed", "the training file has an invalid line"
    with django_capture_on_commit_callbacks(execute=True):
        provider_job = openai_provider.provider_job_sync(provider_job=provider_job)
    assert provider_job.job.error == "openai: the training file has an invalid line"
    assert watched.webhooks() == ["job.failed"]
    assert watched.live_statuses()[-1] == "failed"
    assert watched.step_status() == StepStatus.FAILED and "invalid line" in watched.step.error
    assert watched.versions() == []
