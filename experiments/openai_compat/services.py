"""OpenAI fine-tuning objects on top of datasets and training jobs.

Files are prepared as chat dataset versions: small ones at upload (format errors answer at once), large
ones on the dataset worker (status "uploaded" → "processed" or "error", as OpenAI's files); a fine-tuning job is a training config plus a TrainingJob on the local workers. The
objects returned here are plain dicts in OpenAI's shapes.
"""

from __future__ import annotations

import contextlib
import io
import json
import math
import os
import re
from dataclasses import dataclass
from pathlib import Path

from django.conf import settings
from django.db import transaction
from django.db.models import ProtectedError
from django.utils import timezone

from datasets_app import storage
from datasets_app.models import DatasetTask, DatasetTaskStatus, DatasetVersion, TaskType
from datasets_app.services import dataset_prepare, keep_upload, sync_prepare_bytes
from datasets_app.sources import check_name, max_row_bytes
from experiments import services as training
from experiments.jobs import job_enqueue_on_commit  # queue an existing job's attempt
from experiments.models import (
    Approach,
    Checkpoint,
    JobEvent,
    JobStatus,
    MetricPoint,
    TrainingConfig,
    TrainingJob,
)
from experiments.openai_compat.models import OpenAIFile, OpenAIFineTuneJob, new_file_id
from t4dm_site.access import get_visible, visible
from t4dm_site.errors import Conflict, DomainError, InvalidInput, NotFound
from t4dm_site.events import DatasetTaskChanged, publish

PURPOSES = ("fine-tune",)
MAX_FILE_BYTES = 512 * 1024 * 1024
ORGANIZATION_ID = "org-t4dm"
MAX_SEED = 2_147_483_647  # OpenAI's range for `seed`: 0 to 2**31 - 1
# Our status words are OpenAI's, except the first one.
STATUS_OUT = {JobStatus.VALIDATING: "validating_files"}
# OpenAI's metric names for ours, in the `metrics` events and checkpoint metrics.
METRIC_NAMES = {"loss": "train_loss", "val_loss": "valid_loss", "accuracy": "train_accuracy"}


# --- files ------------------------------------------------------------------------------------------
# An upload is streamed to a private file (`<datasets root>/.openai_files/<file id>`, mode 0600, as the
# datasets path keeps its large uploads); the database holds no bytes. A file up to
# `sync_prepare_bytes()` is prepared in the request (a bad row answers 400 at once); a larger one is
# prepared by the dataset worker (a "prepare" DatasetTask whose params name the file), and the file object
# says so as OpenAI's does: status "uploaded", then "processed" or "error" with `status_details`.

FILE_STATUS_UPLOADED, FILE_STATUS_PROCESSED, FILE_STATUS_ERROR = "uploaded", "processed", "error"


def _files_folder() -> Path:
    folder = storage.datasets_root() / ".openai_files"
    folder.mkdir(mode=0o700, parents=True, exist_ok=True)
    return folder


def file_path(f: OpenAIFile) -> Path | None:
    """Where the file's bytes are kept; None for a file whose bytes are in the database (older rows)."""
    path = storage.datasets_root() / ".openai_files" / f.file_id
    return path if path.is_file() else None


def _upload_size(content) -> int:
    size = getattr(content, "size", None)
    if size is None:
        position = content.tell()
        size = content.seek(0, io.SEEK_END)
        content.seek(position)
    return int(size)


def _unsupported(row) -> tuple[str, str] | None:
    """(field, why) for what OpenAI's chat format holds and T4DM's chat rows cannot: an assistant message
    of weight 0 (not learned from: T4DM learns from every assistant message) and tool or function calls."""
    messages = row.get("messages") if isinstance(row, dict) else None
    for i, message in enumerate(messages if isinstance(messages, list) else []):
        if not isinstance(message, dict):
            continue
        if message.get("weight", 1) != 1:
            return (
                f"messages[{i}].weight",
                f" is {message['weight']!r}: T4DM learns from every assistant message and cannot skip one; "
                "remove that message (or its weight) and upload again",
            )
        for key in ("tool_calls", "function_call"):
            if message.get(key) is not None:
                return f"messages[{i}].{key}", ": tool and function calls are not supported for training here"
    for key in ("tools", "functions"):
        if isinstance(row, dict) and row.get(key):
            return key, ": tool and function definitions are not supported for training here"
    return None


def _refuse_unsupported_rows(path: Path) -> None:
    """A file with rows `_unsupported` finds is refused with the first one's line, rather than trained on
    without what it asks for (or refused for a consequence, such as an empty content). Only lines that
    mention "weight", "tool…" or "function…" are parsed; what is not readable JSON is left to the dataset's
    own checks (which refuse it with its line)."""
    limit, line_no, in_long_line = max_row_bytes(), 0, False
    with path.open("rb") as stream:
        while raw := stream.readline(limit + 1):
            if in_long_line:  # the rest of a line over the limit (the dataset's checks refuse it)
                in_long_line = not raw.endswith(b"\n")
                continue
            line_no += 1
            if len(raw) > limit and not raw.endswith(b"\n"):
                in_long_line = True
                continue
            if b'"weight"' not in raw and b'"tool' not in raw and b'"function' not in raw:
                continue
            try:
                row = json.loads(raw.removeprefix(b"\xef\xbb\xbf") if line_no == 1 else raw)
            except (ValueError, RecursionError):  # not JSON, not UTF-8, nested too deep: the dataset's checks
                continue
            found = _unsupported(row)
            if found:
                field, why = found
                raise InvalidInput(
                    f"line {line_no}: {field}{why}",
                    code="unsupported_field",
                    details={"line": line_no, "field": field, "param": "file"},
                )


def _prepare_file(*, owner, filename: str, path: Path) -> DatasetVersion:
    """The file's rows as a chat dataset version (all train: OpenAI trains on the whole training file; a
    separate validation file gives valid_loss). Read from the kept file as a stream."""
    _refuse_unsupported_rows(path)
    with path.open("rb") as content:
        return dataset_prepare(
            owner=owner,
            name=filename,
            content=content,
            task_type=TaskType.CHAT,
            format="jsonl",
            split={"train": 1.0},
            origin=None,
        )


def file_upload(*, owner, filename: str, content, purpose: str) -> OpenAIFile:
    """POST /v1/files: keep the JSONL privately and prepare it as OpenAI chat rows (a dataset version):
    now when it is small, else on the dataset worker.

    `content` is bytes or an uploaded file; a file's size is checked before it is read, and it is copied
    in 1 MiB chunks, never held whole in memory."""
    if purpose not in PURPOSES:
        raise InvalidInput(
            f"purpose {purpose!r} is not supported here; use 'fine-tune'", details={"param": "purpose"}
        )
    if isinstance(content, bytes | bytearray):
        content = io.BytesIO(content)
    size = _upload_size(content)
    if size > MAX_FILE_BYTES:
        raise InvalidInput(f"the file has {size} bytes; the limit is {MAX_FILE_BYTES}")
    if size == 0:
        raise InvalidInput("the file is empty", details={"param": "file"})
    filename = filename or "upload.jsonl"
    check_name(filename, "dataset name")  # now, not only where it is prepared (maybe on the worker)
    file_id = new_file_id()
    kept = keep_upload(content)
    path = _files_folder() / file_id
    try:
        os.replace(kept, path)
        if size <= sync_prepare_bytes():
            with path.open("rb") as small:
                if not small.read().strip():
                    raise InvalidInput("the file is empty", details={"param": "file"})
            version = _prepare_file(owner=owner, filename=filename, path=path)
            return OpenAIFile.objects.create(
                file_id=file_id, owner=owner, filename=filename, purpose=purpose, content=b"",
                dataset_version=version,
            )  # fmt: skip
        with transaction.atomic():
            f = OpenAIFile.objects.create(
                file_id=file_id, owner=owner, filename=filename, purpose=purpose, content=b""
            )
            task = DatasetTask.objects.create(
                kind="prepare",
                owner=owner,
                params={
                    "openai_file": file_id,
                    "name": filename,
                    "task_type": TaskType.CHAT,
                    "format": "jsonl",
                },
            )
            transaction.on_commit(lambda: _enqueue_file_prepare(task.pk))
        return f
    except BaseException:
        kept.unlink(missing_ok=True)
        path.unlink(missing_ok=True)
        raise


def _enqueue_file_prepare(task_pk: int) -> None:
    from experiments.openai_compat.tasks import file_prepare_task

    file_prepare_task.apply_async(args=[task_pk], queue=settings.CELERY_DATASET_QUEUE)


def file_prepare_run(*, task: DatasetTask) -> OpenAIFile | None:
    """The dataset worker's side of a large upload: prepare the kept file; on success the file points at
    its dataset version ("processed"); bad rows fail the task with the first one's line-numbered message
    ("error" with that message); nothing is stored then. The kept bytes stay: they are the file's content."""
    if task.status not in ("queued", "running"):
        return None
    task.mark_running()
    f = OpenAIFile.objects.filter(file_id=task.params.get("openai_file")).first()
    try:
        path = file_path(f) if f is not None else None
        if path is None:
            raise InvalidInput(
                "the uploaded file is gone (it was removed before it was processed)", code="no_source"
            )
        version = _prepare_file(owner=task.owner, filename=f.filename, path=path)
    except Exception as exc:
        if isinstance(exc, InvalidInput):
            details = exc.details if isinstance(exc.details, dict) else {}
            task.mark_failed(exc.message, {**details, "code": exc.code})
            return None
        task.mark_failed(f"{type(exc).__name__}: {exc}")
        raise
    with transaction.atomic():
        f.dataset_version = version
        f.save(update_fields=["dataset_version"])
        task.mark_succeeded(version)
    return f


def _prepare_task(f: OpenAIFile) -> DatasetTask | None:
    return (
        DatasetTask.objects.filter(kind="prepare", owner_id=f.owner_id, params__openai_file=f.file_id)
        .order_by("-created_at", "-id")
        .first()
    )


def file_status(f: OpenAIFile) -> tuple[str, str | None]:
    """(OpenAI's status, status_details): processed once it has a dataset version; error with the
    refusal's message when its prepare task failed; uploaded while the worker has it."""
    if f.dataset_version_id is not None:
        return FILE_STATUS_PROCESSED, None
    task = _prepare_task(f)
    if task is None:
        # No version and no task: an older row whose dataset was deleted.
        return FILE_STATUS_ERROR, "the file has no prepared dataset"
    if task.status == DatasetTaskStatus.FAILED:
        message = _without_details(task.error or "", task.error_details)
        return FILE_STATUS_ERROR, message or "the file could not be processed"
    return FILE_STATUS_UPLOADED, None


def _nul(value: str) -> bool:
    """Whether `value` holds a NUL character, which PostgreSQL refuses in text and JSON (a 500 there)."""
    return "\x00" in value


def _live_files():
    return OpenAIFile.objects.filter(deleted_at__isnull=True)


def file_get(*, user, file_id: str) -> OpenAIFile:
    """The caller's file (a deleted one, another user's or none: 404 in OpenAI's words)."""
    missing = NotFound(f"No such File object: {file_id}", details={"param": "id"})
    if _nul(file_id):
        raise missing
    return get_visible(_live_files(), user, file_id, "file", lookup="file_id", missing=missing)


def files_visible_to(user):
    return visible(_live_files(), user)


def file_delete(*, f: OpenAIFile) -> dict:
    """DELETE /v1/files/{id}: the file's bytes are removed and its id answers 404 from now on, as OpenAI's.
    The row stays (without bytes) so the fine-tuning jobs that name it still do; the chat dataset its rows
    were prepared into stays too (jobs' configs train on it; delete it on the dataset page). A large file
    still on the dataset worker ends in "the uploaded file is gone"."""
    path = file_path(f)
    OpenAIFile.objects.filter(pk=f.pk).update(deleted_at=timezone.now(), content=b"")
    if path is not None:
        path.unlink(missing_ok=True)
    return {"id": f.file_id, "object": "file", "deleted": True}


def files_listed(*, user, purpose: str | None = None, order: str = "desc") -> list[dict]:
    """GET /v1/files: the caller's files as OpenAI's objects, newest first (`order="asc"`: oldest)."""
    if order not in ("asc", "desc"):
        raise InvalidInput(f"order must be 'asc' or 'desc', got {order!r}", details={"param": "order"})
    files = files_visible_to(user)
    if purpose:
        files = files.none() if _nul(purpose) else files.filter(purpose=purpose)
    objects = [file_object(f) for f in files]
    return objects[::-1] if order == "asc" else objects


def file_size(f: OpenAIFile) -> int:
    path = file_path(f)
    return path.stat().st_size if path is not None else len(bytes(f.content))


def file_content(f: OpenAIFile):
    """The uploaded bytes: bytes for a small file (or an older row, kept in the database), an open binary
    file to stream for one above `sync_prepare_bytes()` (never read whole into the web process)."""
    path = file_path(f)
    if path is None:
        return bytes(f.content)
    if path.stat().st_size <= sync_prepare_bytes():
        return path.read_bytes()
    return path.open("rb")


def file_bytes(f: OpenAIFile) -> bytes:
    path = file_path(f)
    return path.read_bytes() if path is not None else bytes(f.content)


def file_object(f: OpenAIFile) -> dict:
    status, details = file_status(f)
    return {
        "id": f.file_id,
        "object": "file",
        "bytes": file_size(f),
        "created_at": int(f.created_at.timestamp()),
        "filename": f.filename,
        "purpose": f.purpose,
        "status": status,
        "status_details": details,
    }


def _ready_file(*, owner, file_id: str, param: str) -> OpenAIFile:
    """The caller's file, processed; else 400 naming it (still processing, or its refusal); a missing or
    another user's file: 404 naming the field (`param`) that gave it."""
    try:
        f = file_get(user=owner, file_id=file_id)
    except NotFound as exc:
        raise NotFound(exc.message, details={"param": param}) from exc
    status, details = file_status(f)
    if status == FILE_STATUS_UPLOADED:
        raise InvalidInput(
            f"File {file_id} is not ready: it is still being processed. Try again once its status is "
            "'processed'.",
            code="file_not_ready",
            details={"param": param},
        )
    if status == FILE_STATUS_ERROR:
        raise InvalidInput(
            f"File {file_id} could not be processed: {details}", code="invalid_file", details={"param": param}
        )
    return f


# --- jobs -------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Hyperparameters:
    n_epochs: int | str = "auto"
    batch_size: int | str = "auto"
    learning_rate_multiplier: float | str = "auto"


def requested_hyperparameters(
    *, method_type: str | None, top_level: dict | None, supervised: dict | None
) -> Hyperparameters | None:
    """The hyperparameters a create request asks for: `method.supervised.hyperparameters`, or the deprecated
    top-level `hyperparameters`. Both, with different values: 400 (neither is silently dropped)."""
    if method_type is not None and method_type != "supervised":
        raise InvalidInput(
            f"method.type {method_type!r} is not supported here; use 'supervised'",
            details={"param": "method.type"},
        )
    if top_level and supervised and top_level != supervised:
        raise InvalidInput(
            "hyperparameters and method.supervised.hyperparameters differ; give them once, in "
            "method.supervised.hyperparameters (the top-level hyperparameters are deprecated)",
            details={"param": "hyperparameters"},
        )
    chosen = supervised or top_level
    return Hyperparameters(**chosen) if chosen else None


def _resolve(name: str, value, auto, kind):
    if value is None or value == "auto":
        return auto
    if (
        isinstance(value, bool)
        or not isinstance(value, int | float)
        or not math.isfinite(value)
        or value <= 0
    ):
        raise InvalidInput(
            f"hyperparameters.{name} must be a positive number or 'auto', got {value!r}",
            details={"param": f"hyperparameters.{name}"},
        )
    if kind is int and value != int(value):
        raise InvalidInput(
            f"hyperparameters.{name} must be a whole number", details={"param": f"hyperparameters.{name}"}
        )
    return kind(value)


def _training_hyperparameters(hp: Hyperparameters, seed: int) -> tuple[dict, dict]:
    """(our config's hyperparameters, OpenAI's resolved n_epochs/batch_size/learning_rate_multiplier)."""
    defaults = training.DEFAULT_HYPERPARAMETERS
    resolved = {
        "n_epochs": _resolve("n_epochs", hp.n_epochs, defaults["epochs"], int),
        "batch_size": _resolve("batch_size", hp.batch_size, defaults["batch_size"], int),
        "learning_rate_multiplier": _resolve(
            "learning_rate_multiplier", hp.learning_rate_multiplier, 1.0, float
        ),
    }
    ours = {
        "epochs": resolved["n_epochs"],
        "batch_size": resolved["batch_size"],
        "gradient_accumulation": 1,
        "learning_rate": defaults["learning_rate"] * resolved["learning_rate_multiplier"],
        "seed": seed,
        "logging_steps": 1,
    }
    return ours, resolved


def _check_metadata(metadata: dict | None) -> None:
    if metadata is None:
        return
    if len(metadata) > 16 or any(
        not isinstance(k, str) or not isinstance(v, str) or len(k) > 64 or len(v) > 512 or _nul(k + v)
        for k, v in metadata.items()
    ):
        raise InvalidInput(
            "metadata takes at most 16 string pairs, keys ≤ 64 and values ≤ 512 characters, without NUL",
            details={"param": "metadata"},
        )


_FT_CHECKPOINT = re.compile(r"^(?P<name>ft:.+):ckpt-step-(?P<step>\d{1,12})$")


def _model_ref(*, user, model: str) -> str:
    """The T4DM model reference for `model`: the name of a fine-tuned model as this API gives it
    (`ft:<model>:<org>:<suffix>:<ftjob id>`, or a checkpoint's `…:ckpt-step-N`) is its job (`job-001`,
    `job-001/step-N`), so a fine-tuned model is fine-tuned further as OpenAI's are; any other name is
    resolved as a T4DM base model. A name that is not one of the caller's fine-tuned models: 404."""
    if not model.startswith("ft:"):
        return model
    match = _FT_CHECKPOINT.match(model)
    name, step = (match["name"], match["step"]) if match else (model, None)
    ftjob = jobs_visible_to(user).filter(ftjob_id=name.rsplit(":", 1)[-1]).first()
    if ftjob is None or fine_tuned_model_name(ftjob) != name:
        raise NotFound(
            f"model {model!r}: no fine-tuned model of yours goes by that name", code="model_not_found",
            details={"param": "model"},
        )  # fmt: skip
    return ftjob.job.public_id + (f"/step-{step}" if step else "")


def job_create(
    *,
    owner,
    model: str,
    training_file: str,
    validation_file: str | None = None,
    hyperparameters: Hyperparameters | None = None,
    suffix: str | None = None,
    seed: int | None = None,
    metadata: dict | None = None,
    integrations: list | None = None,
) -> OpenAIFineTuneJob:
    """POST /v1/fine_tuning/jobs: a LoRA config of `model` on the file's dataset version, started at once."""
    if suffix and len(suffix) > 64:
        raise InvalidInput("suffix must be at most 64 characters", details={"param": "suffix"})
    if suffix and _nul(suffix):
        raise InvalidInput("suffix must not contain NUL characters", details={"param": "suffix"})
    if seed is not None and not (isinstance(seed, int) and 0 <= seed <= MAX_SEED):
        raise InvalidInput(f"seed must be an integer from 0 to {MAX_SEED}", details={"param": "seed"})
    if integrations:
        # Not silently dropped: the job would not report where the caller expects it to.
        raise InvalidInput(
            "integrations are not supported here (no Weights & Biases reporting); the job's metrics are on "
            "the T4DM dashboard and in its `metrics` events. Leave integrations out.",
            code="unsupported_parameter",
            details={"param": "integrations"},
        )
    _check_metadata(metadata)
    model_base = _model_ref(user=owner, model=model)
    train = _ready_file(owner=owner, file_id=training_file, param="training_file")
    validation = (
        _ready_file(owner=owner, file_id=validation_file, param="validation_file")
        if validation_file
        else None
    )
    seed = int(seed) if seed is not None else 42
    ours, resolved = _training_hyperparameters(hyperparameters or Hyperparameters(), seed)
    dataset_version = train.dataset_version
    # Above sync_prepare_bytes() together, the two files are combined on the dataset worker: the job
    # answers at once as "validating_files" and is queued when the combination succeeds (a subscriber).
    on_worker = validation is not None and file_size(train) + file_size(validation) > sync_prepare_bytes()
    if validation is not None and not on_worker:
        # The validation file's rows become the validation split: the job then reports valid_loss.
        dataset_version = _combine_files(owner=owner, train=train, validation=validation)
    with transaction.atomic():
        # On the worker path this config (on the training file's dataset) checks the model and the
        # hyperparameters now (a 400 at once); the combined dataset's config replaces it later.
        config = training.training_config_create(
            owner=owner,
            dataset_id=dataset_version.dataset.public_id,
            dataset_version=dataset_version.number,  # this file's rows, not a later version of its dataset
            model_base=model_base,
            approach=Approach.LORA,
            hyperparams=ours,
        )
        job = (
            _job_validating(owner=owner, config=config)
            if on_worker
            else training.job_start(owner=owner, config=config)
        )
        ftjob = OpenAIFineTuneJob.objects.create(
            job=job,
            training_file=train,
            validation_file=validation,
            model=model,
            suffix=suffix or "",
            seed=seed,
            metadata=metadata,
            hyperparameters=resolved,
        )
        if on_worker:
            task = DatasetTask.objects.create(
                kind=VALIDATION_TASK_KIND,
                owner=owner,
                params={
                    "openai_ftjob": ftjob.ftjob_id,
                    "training_file": train.file_id,
                    "validation_file": validation.file_id,
                    "hyperparams": ours,
                },
            )
            transaction.on_commit(lambda: _enqueue_validation_files(task.pk))
        return ftjob


# --- a job with a large validation file: its files are combined on the dataset worker ----------------
# POST answers at once with status "validating_files" (our job's "validating", not queued for a training
# worker); a DatasetTask of kind VALIDATION_TASK_KIND combines the two kept files into one dataset
# version (training file's rows: train split; validation file's rows: validation split) on the dataset
# worker. Its end publishes DatasetTaskChanged; the subscriber `subscribers.validation_files_done` then
# queues the job on the combined dataset, or fails it with the refusal naming the file.

VALIDATION_TASK_KIND = "openai_validation"


def _job_validating(*, owner, config) -> TrainingJob:
    """A training job that stays "validating" (not sent to a training worker) until its files are ready."""
    job = TrainingJob.objects.create(owner=owner, config=config, experiment=config.experiment)
    job.output_dir = str(Path(settings.ARTIFACT_ROOT) / "jobs" / job.public_id)
    job.save(update_fields=["output_dir"])
    training.job_event_add(job=job, message="validating files: combining the training and validation files")
    return job


def _enqueue_validation_files(task_pk: int) -> None:
    from experiments.openai_compat.tasks import validation_files_task

    validation_files_task.apply_async(args=[task_pk], queue=settings.CELERY_DATASET_QUEUE)


def _kept_bytes(f: OpenAIFile, param: str) -> bytes:
    content = file_bytes(f)
    if not content.strip():
        raise InvalidInput(
            f"{param} {f.file_id} ({f.filename}): the uploaded file is gone",
            code="no_source",
            details={"param": param},
        )
    return content


def _combine_files(*, owner, train: OpenAIFile, validation: OpenAIFile) -> DatasetVersion:
    """One dataset version: the training file's rows as train, the validation file's as validation. A
    refusal names the file (and its own line) that it is about."""
    train_bytes = _kept_bytes(train, "training_file")
    validation_bytes = _kept_bytes(validation, "validation_file")
    try:
        return dataset_prepare(
            owner=owner,
            name=f"{train.filename} + {validation.filename}",
            content=train_bytes,
            validation_content=validation_bytes,
            task_type=TaskType.CHAT,
            format="jsonl",
        )
    except InvalidInput as exc:
        details = dict(exc.details) if isinstance(exc.details, dict) else {}
        line = details.get("line")
        train_lines = train_bytes.rstrip(b"\r\n").count(b"\n") + 1
        f, param, message = validation, "validation_file", exc.message
        if isinstance(line, int):
            if line <= train_lines:
                f, param = train, "training_file"
            else:
                details["line"] = line - train_lines
                message = re.sub(rf"\bline {line}\b", f"line {line - train_lines}", message, count=1)
        raise InvalidInput(
            f"{param} {f.file_id} ({f.filename}): {message}",
            code=exc.code,
            details={**details, "param": param},
        ) from exc


def validation_files_run(*, task: DatasetTask) -> DatasetVersion | None:
    """The dataset worker's side: combine the job's two files. Success or refusal ends the task (and
    publishes DatasetTaskChanged: the job's reaction is a subscriber); a refusal stores nothing."""
    if task.status not in (DatasetTaskStatus.QUEUED, DatasetTaskStatus.RUNNING):
        return task.result_version
    with transaction.atomic():
        task.mark_running()
        publish(DatasetTaskChanged(task_pk=task.pk, status=task.status))
    ftjob = (
        OpenAIFineTuneJob.objects.select_related("job", "training_file", "validation_file")
        .filter(ftjob_id=task.params.get("openai_ftjob"))
        .first()
    )
    try:
        if ftjob is None or ftjob.job.is_terminal:
            raise InvalidInput("the fine-tuning job ended before its files were validated", code="job_ended")
        version = _combine_files(
            owner=task.owner, train=ftjob.training_file, validation=ftjob.validation_file
        )
    except Exception as exc:
        with transaction.atomic():
            if isinstance(exc, InvalidInput):
                details = exc.details if isinstance(exc.details, dict) else {}
                task.mark_failed(exc.message, {**details, "code": exc.code})
            else:
                task.mark_failed(f"{type(exc).__name__}: {exc}")
            publish(DatasetTaskChanged(task_pk=task.pk, status=task.status))
        if isinstance(exc, InvalidInput):
            return None
        raise
    with transaction.atomic():
        task.mark_succeeded(version)
        publish(DatasetTaskChanged(task_pk=task.pk, status=task.status))
    return version


def job_files_validated(*, task: DatasetTask) -> None:
    """After the combine task ended: queue the job on the combined dataset (its config replaces the
    placeholder), or fail it with the refusal. A job cancelled meanwhile is left as it is."""
    with transaction.atomic():
        ftjob = OpenAIFineTuneJob.objects.filter(ftjob_id=task.params.get("openai_ftjob")).first()
        if ftjob is None:
            return
        job = TrainingJob.objects.select_for_update().select_related("config").get(pk=ftjob.job_id)
        if job.status != JobStatus.VALIDATING:
            return
        if task.status == DatasetTaskStatus.FAILED:
            error = task.error or "the files could not be validated"
        elif task.status != DatasetTaskStatus.SUCCEEDED:
            return
        elif task.result_version_id is None:
            error = "the combined dataset of the training and validation files was deleted"
        else:
            placeholder = job.config
            try:
                with transaction.atomic():
                    config = training.training_config_create(
                        owner=job.owner,
                        dataset_id=task.result_version.dataset.public_id,
                        dataset_version=task.result_version.number,
                        model_base=placeholder.model_base,
                        approach=placeholder.approach,
                        hyperparams=task.params.get("hyperparams"),
                        experiment=placeholder.experiment,
                    )
            except DomainError as exc:
                error = exc.message
            else:
                job.config = config
                job.save(update_fields=["config"])
                with contextlib.suppress(ProtectedError):
                    with transaction.atomic():
                        TrainingConfig.objects.filter(pk=placeholder.pk, jobs__isnull=True).delete()
                token = job.issue_token()
                training.job_transition(job=job, to=JobStatus.QUEUED)
                training.job_event_add(
                    job=job,
                    message=f"files validated; queued for a worker on queue {training.job_queue(job)!r}",
                )
                job_enqueue_on_commit(job, token)
                return
        training.job_transition(job=job, to=JobStatus.FAILED, error=error)
        training.job_event_add(job=job, message=error, level=JobEvent.Level.ERROR)


def _validation_task_failed(ftjob: OpenAIFineTuneJob) -> bool:
    return DatasetTask.objects.filter(
        kind=VALIDATION_TASK_KIND, params__openai_ftjob=ftjob.ftjob_id, status=DatasetTaskStatus.FAILED
    ).exists()


def _ftjobs():
    return OpenAIFineTuneJob.objects.select_related("job", "training_file", "validation_file")


def jobs_visible_to(user):
    return visible(_ftjobs(), user, owner_field="job__owner")


# The metadata filter of GET /v1/fine_tuning/jobs: `metadata[k]=v` (deepObject, as the `openai` package
# sends `jobs.list(metadata={...})`), or `metadata=null` for the jobs created without metadata.
_NO_METADATA = object()


def metadata_filter(query) -> dict | object | None:
    """The filter a list request's query asks for: a dict of pairs all of which a job's metadata must hold,
    _NO_METADATA for `metadata=null`, or None (no filter)."""
    if query.get("metadata") == "null":
        return _NO_METADATA
    pairs = {
        key[len("metadata[") : -1]: value
        for key, value in query.items()
        if key.startswith("metadata[") and key.endswith("]")
    }
    return pairs or None


def jobs_listed(*, user, metadata=None) -> list[dict]:
    """GET /v1/fine_tuning/jobs: the caller's jobs as OpenAI's objects, newest first, filtered by
    `metadata_filter`'s answer."""
    jobs = jobs_visible_to(user)
    if metadata is _NO_METADATA:
        jobs = [j for j in jobs if not j.metadata]
    elif metadata:
        jobs = [j for j in jobs if isinstance(j.metadata, dict) and metadata.items() <= j.metadata.items()]
    return [job_object(j) for j in jobs]


def job_get(*, user, ftjob_id: str) -> OpenAIFineTuneJob:
    missing = NotFound(f"No such fine-tuning job: {ftjob_id}", details={"param": "fine_tuning_job_id"})
    if _nul(ftjob_id):
        raise missing
    return get_visible(
        _ftjobs(), user, ftjob_id, "job", lookup="ftjob_id", owner_field="job__owner", missing=missing
    )


def job_cancel(*, ftjob: OpenAIFineTuneJob) -> OpenAIFineTuneJob:
    try:
        training.job_cancel(job=ftjob.job)
    except Conflict as exc:  # already finished: say so with the id the caller knows (not our job-…)
        ftjob.job.refresh_from_db()
        status = STATUS_OUT.get(ftjob.job.status, ftjob.job.status)
        raise Conflict(
            f"Job {ftjob.ftjob_id} has already finished ({status}); only a job that has not finished can be "
            "cancelled",
            code="job_finished",
            details={"param": "fine_tuning_job_id"},
        ) from exc
    ftjob.job.refresh_from_db()
    return ftjob


def fine_tuned_model_name(ftjob: OpenAIFineTuneJob, step: int | None = None) -> str:
    name = f"ft:{ftjob.model}:{ORGANIZATION_ID}:{ftjob.suffix}:{ftjob.ftjob_id}"
    return f"{name}:ckpt-step-{step}" if step is not None else name


def _ts(value) -> int | None:
    return int(value.timestamp()) if value else None


def job_object(ftjob: OpenAIFineTuneJob) -> dict:
    job: TrainingJob = ftjob.job
    succeeded = job.status == JobStatus.SUCCEEDED
    error = None
    if job.status == JobStatus.FAILED:
        error = {"code": "training_failed", "message": job.error or "training failed", "param": None}
        if ftjob.validation_file_id and _validation_task_failed(ftjob):
            param = "training_file" if job.error.startswith("training_file ") else "validation_file"
            error = {"code": "invalid_file", "message": job.error, "param": param}
    hyperparameters = dict(ftjob.hyperparameters)
    return {
        "object": "fine_tuning.job",
        "id": ftjob.ftjob_id,
        "created_at": _ts(ftjob.created_at),
        "error": error,
        "fine_tuned_model": fine_tuned_model_name(ftjob) if succeeded else None,
        "finished_at": _ts(job.finished_at),
        "hyperparameters": hyperparameters,
        "model": ftjob.model,
        "organization_id": ORGANIZATION_ID,
        "result_files": [],
        "seed": ftjob.seed,
        "status": STATUS_OUT.get(job.status, job.status),
        "trained_tokens": None,
        "training_file": ftjob.training_file.file_id,
        "validation_file": ftjob.validation_file.file_id if ftjob.validation_file else None,
        "estimated_finish": None,
        "integrations": [],
        "metadata": ftjob.metadata,
        "user_provided_suffix": ftjob.suffix or None,
        "method": {"type": "supervised", "supervised": {"hyperparameters": hyperparameters}},
        # Where the same run lives on the T4DM dashboard.
        "t4dm_job_id": job.public_id,
    }


def job_events(ftjob: OpenAIFineTuneJob) -> list[dict]:
    """The job's log lines and one `metrics` event per logged step, newest first (OpenAI's order)."""
    job = ftjob.job
    events = [
        {
            "object": "fine_tuning.job.event",
            "id": f"ftevent-{e.pk}",
            "created_at": _ts(e.created_at),
            "level": "warn" if e.level == JobEvent.Level.WARNING else e.level,
            "message": e.message,
            "data": {},
            "type": "message",
            "_order": (e.created_at.timestamp(), 0, e.pk),
        }
        for e in job.events.all()
    ]
    by_step: dict[int, dict] = {}
    times: dict[int, float] = {}
    for key, step, value, wall_time in MetricPoint.objects.filter(job=job).values_list(
        "key", "step", "value", "wall_time"
    ):
        by_step.setdefault(step, {})[METRIC_NAMES.get(key, key)] = value
        times[step] = max(times.get(step, 0.0), wall_time)
    for step, values in by_step.items():
        data = {"step": step, "total_steps": job.total_steps or None, **values}
        events.append(
            {
                "object": "fine_tuning.job.event",
                "id": f"ftevent-m{job.pk}s{step}",
                "created_at": int(times[step]),
                "level": "info",
                "message": f"Step {step}/{job.total_steps or '?'}: "
                + ", ".join(f"{k}={v:.4f}" for k, v in values.items()),
                "data": data,
                "type": "metrics",
                "_order": (times[step], 1, step),
            }
        )
    events.sort(key=lambda e: e["_order"], reverse=True)
    for e in events:
        del e["_order"]
    return events


def job_checkpoints(ftjob: OpenAIFineTuneJob) -> list[dict]:
    checkpoints = Checkpoint.objects.filter(job=ftjob.job).order_by("-step")
    return [
        {
            "object": "fine_tuning.job.checkpoint",
            "id": f"ftckpt_{c.pk}",
            "created_at": _ts(c.created_at),
            "fine_tuned_model_checkpoint": fine_tuned_model_name(ftjob, c.step),
            "fine_tuning_job_id": ftjob.ftjob_id,
            "step_number": c.step,
            "metrics": {"step": c.step, **{METRIC_NAMES.get(k, k): v for k, v in (c.metrics or {}).items()}},
        }
        for c in checkpoints
    ]


MAX_PAGE = 100


def page(objects: list[dict], *, after: str | None, limit: int) -> dict:
    """Cursor pagination: the objects after the one whose id is `after`, `limit` of them."""
    if limit < 1:
        raise InvalidInput("limit must be at least 1", details={"param": "limit"})
    limit = min(limit, MAX_PAGE)  # more: has_more is true and the client asks for the next page
    start = 0
    if after:
        ids = [o["id"] for o in objects]
        if after not in ids:
            raise InvalidInput(f"after: no object with id {after!r} in this list", details={"param": "after"})
        start = ids.index(after) + 1
    data = objects[start : start + limit]
    return {
        "object": "list",
        "data": data,
        "has_more": start + limit < len(objects),
        "first_id": data[0]["id"] if data else None,
        "last_id": data[-1]["id"] if data else None,
    }


def error_message(exc: DomainError) -> str:
    """A refusal's message for OpenAI's error object, which has no `details` (see `_without_details`)."""
    return _without_details(exc.message, exc.details)


def _without_details(message: str, details, listed: int = 3) -> str:
    """A dataset refusal's "(and N more errors: see details)" naming the next ones (their lines) instead,
    for OpenAI's objects, which carry no details."""
    issues = details.get("issues") if isinstance(details, dict) else None
    if not isinstance(issues, list) or not message.endswith(": see details)"):
        return message
    rest = [i["message"] for i in issues[1 : 1 + listed] if isinstance(i, dict) and i.get("message")]
    if not rest:
        return message
    return message.removesuffix(": see details)") + "; next: " + "; ".join(rest) + ")"


def parse_json_body(raw: bytes) -> dict:
    try:
        body = json.loads(raw or b"{}")
    except ValueError as exc:
        raise InvalidInput(f"the body is not JSON: {exc}") from exc
    if not isinstance(body, dict):
        raise InvalidInput("the body must be a JSON object")
    return body
