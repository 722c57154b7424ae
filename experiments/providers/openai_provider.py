"""finetune_openai: a dataset → OpenAI chat JSONL → upload → fine-tuning job, followed into a T4DM job.

The provider's `metrics` events become metric points through the one ingest service (so an API job
shows the same live curves as a local one), its other events become the job's log, its status becomes
the job's status, and the resulting `fine_tuned_model` becomes a model version with provider "openai".
Works against api.openai.com or any OpenAI-compatible server (settings T4DM_OPENAI_BASE_URL/_API_KEY).
"""

from __future__ import annotations

import io
import json

import openai
from django.conf import settings
from django.db import transaction

from datasets_app.models import DatasetVersion
from datasets_app.selectors import dataset_version_latest
from datasets_app.services import dataset_prepare, version_rows
from experiments import services as training
from experiments.ingest import PointIn, metric_points_ingest
from experiments.models import Approach, JobStatus, TrainingConfig, TrainingJob
from experiments.openai_compat.models import ProviderJob
from models_registry.services import OPENAI_PREFIX
from t4dm_site.errors import Conflict, InvalidInput

ROLES = {"system", "user", "assistant", "tool"}
MIN_EXAMPLES = 10
MAX_TOKENS_PER_EXAMPLE = 65_536
# OpenAI's metric names → ours, so API curves sit beside local ones.
POINT_KEYS = {"train_loss": "loss", "valid_loss": "val_loss", "full_valid_loss": "full_val_loss",
              "train_mean_token_accuracy": "accuracy", "valid_mean_token_accuracy": "val_accuracy"}  # fmt: skip
STATUS = {"validating_files": JobStatus.VALIDATING, "queued": JobStatus.QUEUED, "running": JobStatus.RUNNING,
          "succeeded": JobStatus.SUCCEEDED, "failed": JobStatus.FAILED, "cancelled": JobStatus.CANCELLED}  # fmt: skip


def client() -> openai.OpenAI:
    if not settings.OPENAI_API_KEY:
        raise InvalidInput(
            "set T4DM_OPENAI_API_KEY (and T4DM_OPENAI_BASE_URL for another server) to use finetune_openai"
        )
    return openai.OpenAI(base_url=settings.OPENAI_BASE_URL, api_key=settings.OPENAI_API_KEY, max_retries=2)


def to_openai_chat(rows: list[dict]) -> bytes:
    """OpenAI's chat fine-tuning format, checked by their rules; the bytes of the JSONL to upload."""
    if len(rows) < MIN_EXAMPLES:
        raise InvalidInput(
            f"OpenAI needs at least {MIN_EXAMPLES} training examples; the dataset has {len(rows)}"
        )
    lines = []
    for number, row in enumerate(rows, start=1):
        messages = row.get("messages")
        if not isinstance(messages, list) or not messages:
            raise InvalidInput(
                f"row {number}: needs a non-empty 'messages' list (chat format)", code="invalid_row"
            )
        clean = []
        for message in messages:
            role, content = message.get("role"), message.get("content")
            if role not in ROLES:
                raise InvalidInput(
                    f"row {number}: role {role!r} is not one of {sorted(ROLES)}", code="invalid_row"
                )
            if not isinstance(content, str) and not message.get("tool_calls"):
                raise InvalidInput(f"row {number}: a {role} message needs text content", code="invalid_row")
            out = {"role": role, "content": content}
            if "weight" in message and message["weight"] is not None:
                if role != "assistant" or message["weight"] not in (0, 1):
                    raise InvalidInput(
                        f"row {number}: weight must be 0 or 1, on assistant messages only", code="invalid_row"
                    )
                out["weight"] = int(message["weight"])
            clean.append(out)
        if not any(m["role"] == "assistant" for m in clean):
            raise InvalidInput(f"row {number}: needs at least one assistant message", code="invalid_row")
        # ~4 characters per token: a cheap, conservative check of OpenAI's per-example limit.
        if sum(len(m.get("content") or "") for m in clean) // 4 > MAX_TOKENS_PER_EXAMPLE:
            raise InvalidInput(
                f"row {number}: longer than {MAX_TOKENS_PER_EXAMPLE} tokens", code="invalid_row"
            )
        lines.append(json.dumps({"messages": clean}))
    return ("\n".join(lines) + "\n").encode()


def _dataset_version(owner, dataset_path: str) -> DatasetVersion:
    if dataset_path.startswith("ds-"):
        return dataset_version_latest(user=owner, dataset_id=dataset_path)
    return dataset_prepare(
        owner=owner, name=dataset_path.rsplit("/", 1)[-1], source_path=dataset_path, task_type="chat"
    )


def finetune_openai(
    *, owner, dataset_path: str, base_model: str = "gpt-4o-mini-2024-07-18", suffix: str = "t4dm-custom"
) -> ProviderJob:
    """Upload, create the remote job and a T4DM job that mirrors it. `provider_job_sync` follows it."""
    version = _dataset_version(owner, dataset_path)
    if version.task_type != "chat":
        raise InvalidInput(f"OpenAI fine-tuning takes chat data; {dataset_path} is {version.task_type}")
    rows = [row for split in ("train", "validation", "test") for row in version_rows(version, split)]
    content = to_openai_chat(rows)
    api = client()
    try:
        uploaded = api.files.create(file=("train.jsonl", io.BytesIO(content)), purpose="fine-tune")
        remote = api.fine_tuning.jobs.create(
            model=base_model, training_file=uploaded.id, suffix=suffix or None
        )
    except openai.APIStatusError as exc:
        raise InvalidInput(f"OpenAI refused the job: {exc.message}", code="provider_error") from exc
    except openai.APIConnectionError as exc:
        raise Conflict(
            f"cannot reach {settings.OPENAI_BASE_URL}: {exc}", code="provider_unreachable"
        ) from exc
    with transaction.atomic():
        experiment = training.experiment_create(
            owner=owner, name=f"{base_model} via OpenAI on {version.dataset.name}"
        )
        config = TrainingConfig.objects.create(
            owner=owner, experiment=experiment, dataset_version=version, model_base=base_model,
            approach=Approach.API, task_type=version.task_type, hyperparameters={"suffix": suffix},
            checkpointing={}, estimate={},
        )  # fmt: skip
        job = TrainingJob.objects.create(owner=owner, config=config, experiment=experiment)
        training.job_transition(job=job, to=JobStatus.QUEUED)
        training.job_event_add(
            job=job, message=f"OpenAI job {remote.id} created at {settings.OPENAI_BASE_URL}"
        )
        return ProviderJob.objects.create(
            job=job, provider="openai", base_url=settings.OPENAI_BASE_URL, remote_file_id=uploaded.id,
            remote_job_id=remote.id, remote_status=remote.status,
        )  # fmt: skip


def provider_job_sync(*, provider_job: ProviderJob) -> ProviderJob:
    """One poll: new events → log lines and metric points; status → the job; success → a model version."""
    api = client()
    remote = api.fine_tuning.jobs.retrieve(provider_job.remote_job_id)
    seen = set(provider_job.seen_event_ids)
    new_events = [
        e for e in api.fine_tuning.jobs.list_events(provider_job.remote_job_id, limit=100) if e.id not in seen
    ]
    job = provider_job.job
    points = []
    for event in reversed(new_events):  # oldest first
        data = event.data if isinstance(event.data, dict) else {}
        if event.type == "metrics" and "step" in data:
            for name, value in data.items():
                if name in ("step", "total_steps") or not isinstance(value, int | float):
                    continue
                points.append(PointIn(key=POINT_KEYS.get(name, name), step=int(data["step"]), value=float(value),
                                      wall_time=float(event.created_at)))  # fmt: skip
        elif not job.is_terminal:
            training.job_event_add(
                job=job,
                message=f"openai: {event.message}",
                level="warning" if event.level == "warn" else "info",
            )
    if points:
        metric_points_ingest(job=job, points=points)
    with transaction.atomic():
        job = TrainingJob.objects.select_for_update().get(pk=job.pk)
        status = STATUS.get(remote.status, job.status)
        if not job.is_terminal and status != job.status:
            _move(job, status, remote)
        provider_job.job = job
        provider_job.remote_status = remote.status
        provider_job.fine_tuned_model = remote.fine_tuned_model or ""
        provider_job.seen_event_ids = sorted(seen | {e.id for e in new_events})
        provider_job.save(update_fields=["remote_status", "fine_tuned_model", "seen_event_ids"])
    return provider_job


def _move(job: TrainingJob, status: str, remote) -> None:
    """The remote status becomes the job's, through the one transition: the same webhooks, live status,
    auto_version (a version with provider "openai") and workflow effects as a local job."""
    if status == JobStatus.RUNNING:
        training.job_transition(job=job, to=status, worker="openai")
    elif status == JobStatus.SUCCEEDED:
        training.job_transition(
            job=job, to=status, final_model_path=f"{OPENAI_PREFIX}{remote.fine_tuned_model}"
        )
        training.job_event_add(job=job, message=f"succeeded: fine_tuned_model {remote.fine_tuned_model}")
    elif status == JobStatus.FAILED:
        message = getattr(remote.error, "message", None) or "the provider reported a failure"
        training.job_transition(job=job, to=status, error=f"openai: {message}")
    elif status in (JobStatus.CANCELLED, JobStatus.QUEUED):
        training.job_transition(job=job, to=status)


def provider_job_cancel(*, provider_job: ProviderJob) -> ProviderJob:
    client().fine_tuning.jobs.cancel(provider_job.remote_job_id)
    return provider_job_sync(provider_job=provider_job)
