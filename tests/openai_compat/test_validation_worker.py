"""A fine-tuning job with a validation_file, its two files together above T4DM_SYNC_PREPARE_BYTES: the
web request does not re-read or re-tokenize them (it answered after preparing both in the request
before). The job answers at once as "validating_files"; the dataset worker combines the files (a
DatasetTask); the task's end queues the job on the combined dataset (train + validation split, so the
worker evaluates and reports valid_loss), or fails it with the refusal naming the file. The worker side
runs here in-process through the Celery task function, as the datasets-queue worker would run it."""

from __future__ import annotations

import httpx
import openai
import pytest

from datasets_app import services as dataset_services
from datasets_app.models import Dataset, DatasetTask, DatasetVersion
from datasets_app.storage import datasets_root
from experiments.jobs import job_spec_for_worker
from experiments.models import TrainingConfig
from experiments.openai_compat.models import OpenAIFineTuneJob
from experiments.openai_compat.services import VALIDATION_TASK_KIND
from experiments.openai_compat.tasks import validation_files_task
from tests.datasets_app.conftest import distinct_chat_rows, jsonl
from tests.openai_compat.test_files_worker import DjangoTransport, _get, _job, _run_worker, _upload

ROWS = distinct_chat_rows(40)


@pytest.fixture
def threshold(settings):
    settings.SYNC_PREPARE_BYTES = 2_000
    return settings.SYNC_PREPARE_BYTES


@pytest.fixture
def files(client, researcher, artifact_root, threshold):
    """A small training file (prepared at upload) and a large validation file (prepared by the worker)."""
    train = _upload(client, researcher, jsonl(ROWS[:6])).json()
    assert train["status"] == "processed"
    validation_bytes = jsonl(ROWS[6:])
    assert len(validation_bytes) > threshold
    validation = _upload(client, researcher, validation_bytes, "valid.jsonl").json()
    _run_worker(validation["id"])
    assert _get(client, researcher, f"/files/{validation['id']}").json()["status"] == "processed"
    return train["id"], validation["id"]


@pytest.fixture
def no_prepare_in_process(monkeypatch):
    """Records every dataset_prepare call (the real one still runs)."""
    calls = []
    original = dataset_services.dataset_prepare

    def recording(**kwargs):
        calls.append(kwargs.get("name"))
        return original(**kwargs)

    monkeypatch.setattr("experiments.openai_compat.services.dataset_prepare", recording)
    return calls


def _run_validation(ftjob_id: str, capture) -> list:
    """The dataset worker runs the combine task; then the subscribers of its end run (after commit).
    Returns the on-commit callbacks those subscribers registered (the training worker's enqueue)."""
    task = DatasetTask.objects.get(kind=VALIDATION_TASK_KIND, params__openai_ftjob=ftjob_id)
    assert task.status == "queued"
    with capture(execute=False) as ended:
        validation_files_task(task.pk)
    reactions = [c for c in ended if "openai_compat.subscribers" in getattr(c, "__qualname__", "")]
    assert len(reactions) == 2  # running, then its end: the job's reaction is a lifecycle-event subscriber
    with capture(execute=False) as queued:
        for reaction in reactions:
            reaction()
    return queued


def test_a_large_validation_file_is_combined_on_the_worker_and_the_job_then_starts(
    client, researcher, files, no_prepare_in_process, django_capture_on_commit_callbacks
):
    train_id, validation_id = files
    datasets_before = Dataset.objects.count()
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        created = _job(client, researcher, train_id, validation_id)
    assert created.status_code == 200, created.content
    body = created.json()
    assert body["status"] == "validating_files" and body["validation_file"] == validation_id
    assert no_prepare_in_process == []  # nothing read, tokenized or validated in the web request
    assert Dataset.objects.count() == datasets_before
    task = DatasetTask.objects.get(kind=VALIDATION_TASK_KIND)
    assert task.params["openai_ftjob"] == body["id"] and task.status == "queued"
    assert any("job_create" in c.__qualname__ for c in callbacks)  # enqueued after commit
    ftjob = OpenAIFineTuneJob.objects.get(ftjob_id=body["id"])
    assert ftjob.job.status == "validating" and ftjob.job.token_hash == ""  # not sent to a training worker
    assert _get(client, researcher, f"/fine_tuning/jobs/{body['id']}").json()["status"] == "validating_files"

    queued = _run_validation(body["id"], django_capture_on_commit_callbacks)

    assert no_prepare_in_process == [f"{'train.jsonl'} + valid.jsonl"]  # on the worker
    assert any("_enqueue_on_commit" in c.__qualname__ for c in queued)  # the training worker's message
    after = _get(client, researcher, f"/fine_tuning/jobs/{body['id']}").json()
    assert after["status"] == "queued" and after["error"] is None
    ftjob.refresh_from_db()
    version = ftjob.job.config.dataset_version
    assert task.__class__.objects.get(pk=task.pk).result_version == version
    assert {name: part["rows"] for name, part in version.splits.items() if part.get("rows")} == {
        "train": 6,
        "validation": 34,
    }
    assert TrainingConfig.objects.filter(experiment=ftjob.job.experiment).count() == 1  # placeholder gone
    spec = job_spec_for_worker(job=ftjob.job)
    assert spec["dataset"]["validation"]  # the worker evaluates on it: valid_loss in the job's metrics
    assert ftjob.job.config.hyperparameters["epochs"] == ftjob.hyperparameters["n_epochs"]


def test_a_failed_combination_fails_the_job_naming_the_file(
    client, researcher, files, django_capture_on_commit_callbacks
):
    train_id, validation_id = files
    created = _job(client, researcher, train_id, validation_id).json()
    assert created["status"] == "validating_files"
    # the kept validation file no longer holds valid rows (line 3) when the worker reads it
    kept = datasets_root() / ".openai_files" / validation_id
    lines = kept.read_bytes().splitlines(keepends=True)
    kept.write_bytes(b"".join([*lines[:2], b'{"messages": 3}\n', *lines[2:]]))
    versions_before = DatasetVersion.objects.count()
    folders_before = sorted(p.name for p in datasets_root().iterdir())

    queued = _run_validation(created["id"], django_capture_on_commit_callbacks)

    assert not any("_enqueue_on_commit" in c.__qualname__ for c in queued)
    assert DatasetVersion.objects.count() == versions_before  # no half-written dataset version
    assert sorted(p.name for p in datasets_root().iterdir()) == folders_before
    failed = _get(client, researcher, f"/fine_tuning/jobs/{created['id']}").json()
    assert failed["status"] == "failed"
    error = failed["error"]
    assert error["param"] == "validation_file" and error["code"] == "invalid_file"
    assert validation_id in error["message"] and "valid.jsonl" in error["message"]
    assert "line 3" in error["message"], error["message"]  # the validation file's own line


def test_a_job_cancelled_while_validating_stays_cancelled(
    client, researcher, files, django_capture_on_commit_callbacks
):
    train_id, validation_id = files
    created = _job(client, researcher, train_id, validation_id).json()
    cancelled = client.post(
        f"/v1/fine_tuning/jobs/{created['id']}/cancel",
        headers={"Authorization": f"Bearer {researcher.raw_token}"},
    )
    assert cancelled.status_code == 200 and cancelled.json()["status"] == "cancelled"
    versions_before = DatasetVersion.objects.count()

    queued = _run_validation(created["id"], django_capture_on_commit_callbacks)

    assert queued == [] or not any("_enqueue_on_commit" in c.__qualname__ for c in queued)
    assert DatasetVersion.objects.count() == versions_before  # nothing combined for an ended job
    assert _get(client, researcher, f"/fine_tuning/jobs/{created['id']}").json()["status"] == "cancelled"


def test_small_files_with_a_validation_file_still_start_at_once(client, researcher, artifact_root, threshold):
    train = _upload(client, researcher, jsonl(ROWS[:4])).json()
    validation = _upload(client, researcher, jsonl(ROWS[4:8]), "valid.jsonl").json()
    created = _job(client, researcher, train["id"], validation["id"])
    assert created.status_code == 200, created.content
    assert created.json()["status"] == "queued"
    assert not DatasetTask.objects.filter(kind=VALIDATION_TASK_KIND).exists()


def test_the_openai_client_sees_validating_files_then_queued(
    client, researcher, files, django_capture_on_commit_callbacks
):
    train_id, validation_id = files
    sdk = openai.OpenAI(
        base_url="http://testserver/v1",
        api_key=researcher.raw_token,
        max_retries=0,
        http_client=httpx.Client(transport=DjangoTransport(client)),
    )
    job = sdk.fine_tuning.jobs.create(
        model="t4dm-tiny", training_file=train_id, validation_file=validation_id
    )
    assert job.status == "validating_files" and job.validation_file == validation_id
    _run_validation(job.id, django_capture_on_commit_callbacks)
    assert sdk.fine_tuning.jobs.retrieve(job.id).status == "queued"
