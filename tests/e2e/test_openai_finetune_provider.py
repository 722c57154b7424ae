"""finetune_openai with the official `openai` package against a live T4DM's OpenAI-compatible API:
upload, job, status and metric events followed into a local job, and a model version with provider openai."""

from __future__ import annotations

import time

import pytest

from datasets_app.services import dataset_prepare
from experiments.models import JobStatus, MetricPoint
from experiments.providers.openai_provider import finetune_openai, provider_job_cancel, provider_job_sync
from models_registry.models import ModelVersion
from tests.conftest import DEMO_ROWS

pytestmark = [pytest.mark.e2e, pytest.mark.django_db]


@pytest.fixture
def remote(settings, embedded_platform):
    settings.OPENAI_BASE_URL = embedded_platform.base_url + "/v1"
    settings.OPENAI_API_KEY = embedded_platform.token
    return embedded_platform


def _follow(provider_job, timeout: float = 240):
    deadline = time.monotonic() + timeout
    while not provider_job.job.is_terminal and time.monotonic() < deadline:
        provider_job = provider_job_sync(provider_job=provider_job)
        time.sleep(0.5)
    return provider_job


def test_finetune_openai_follows_the_job_to_a_model_version(
    remote, researcher, artifact_root, django_capture_on_commit_callbacks
):
    version = dataset_prepare(owner=researcher, name="kb", content=DEMO_ROWS.read_bytes(), task_type="chat")
    # when
    provider_job = finetune_openai(
        owner=researcher, dataset_path=version.dataset.public_id, base_model="t4dm-tiny", suffix="prov"
    )
    assert provider_job.remote_job_id.startswith("ftjob-") and provider_job.remote_file_id.startswith("file-")
    # The version is registered by the lifecycle event's auto_version subscriber, after commit.
    with django_capture_on_commit_callbacks(execute=True):
        provider_job = _follow(provider_job)
    # then: the mirror job succeeded, with the remote's metrics as points and the model as a version
    job = provider_job.job
    assert job.status == JobStatus.SUCCEEDED, job.error
    assert provider_job.fine_tuned_model == f"ft:t4dm-tiny:org-t4dm:prov:{provider_job.remote_job_id}"
    steps = list(
        MetricPoint.objects.filter(job=job, key="loss").order_by("step").values_list("step", flat=True)
    )
    assert steps and steps[0] == 1 and steps == sorted(set(steps))
    registered = ModelVersion.objects.get(job=job)
    assert registered.provider == "openai" and registered.artifact_path == provider_job.fine_tuned_model
    assert job.events.filter(message__startswith="openai:").exists()


def test_finetune_openai_cancel(remote, researcher, artifact_root):
    version = dataset_prepare(owner=researcher, name="kb", content=DEMO_ROWS.read_bytes(), task_type="chat")
    provider_job = finetune_openai(
        owner=researcher, dataset_path=version.dataset.public_id, base_model="t4dm-tiny"
    )
    provider_job = provider_job_cancel(provider_job=provider_job)
    assert _follow(provider_job, timeout=120).job.status == JobStatus.CANCELLED
