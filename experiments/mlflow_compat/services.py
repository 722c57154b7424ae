"""MLflow's tracking model on ours: experiments are Experiments, runs are tracking-only TrainingJobs
(no worker trains them), metrics go through the one ingest service, params and tags live on MLflowRun.

Objects returned here are plain dicts in MLflow's REST shapes (mlflow/protos/service.proto).
"""

from __future__ import annotations

import json
import math
import re
import shlex
import time
from collections import Counter
from typing import Any

from django.db import connection, transaction
from django.db.models import Case, Q, Value, When

from datasets_app.models import Dataset, DatasetVersion, TaskType, ValidationStatus
from experiments import services as training
from experiments.ingest import metric_points_ingest_body
from experiments.jobs import RUN_NAME_MAX, job_update
from experiments.mlflow_compat.models import MetricValueExtra, MLflowExperiment, MLflowRun, RunStatus
from experiments.models import (
    Approach,
    Experiment,
    JobStatus,
    MetricPoint,
    TrainingConfig,
    TrainingJob,
)
from experiments.selectors import experiments_visible_to
from t4dm_site.access import get_visible, visible
from t4dm_site.errors import Conflict, InvalidInput, NotFound

DEFAULT_EXPERIMENT_ID = "0"
# Where MLflow's server says artifacts go (`mlflow server` serves them under this scheme). T4DM stores
# no MLflow artifacts: with this URI the client's log_artifact/log_text/log_dict ask the server, which
# answers 404, and the call fails. An empty URI made the client copy them into its working directory
# (`log_text(..., "plots/a.txt")` wrote ./plots/a.txt) and report success.
ARTIFACTS_SCHEME = "mlflow-artifacts:"
DEFAULT_EXPERIMENT_NAME = "Default"
EXTERNAL_DATASET_NAME = "external runs"
EXTERNAL_MODEL = "external"
JOB_ID_TAG = "t4dm.job_id"
# MLflow's own limits (mlflow/utils/validation.py).
MAX_METRICS_PER_BATCH = 1000
MAX_PARAMS_TAGS_PER_BATCH = 100
MAX_ENTITIES_PER_BATCH = 1000
MAX_PARAM_VAL_LENGTH = 6000
MAX_TAG_VAL_LENGTH = 8000
MAX_ENTITY_KEY_LENGTH = 250
MAX_EXPERIMENT_TAG_VAL_LENGTH = 20000
# (job, key, step) lookups OR-ed into one query: SQLite refuses an expression deeper than 1,000.
_LOOKUPS_PER_QUERY = 300
# Series whose latest value one query reads: 8 bound parameters each, under SQLite's oldest limit (999).
_SERIES_PER_QUERY = 120
ACTIVE, DELETED = "active", "deleted"  # MLflow's lifecycle stages
_ALL_STAGES = (ACTIVE, DELETED)
TERMINAL_RUN_STATUS = {
    RunStatus.FINISHED: JobStatus.SUCCEEDED,
    RunStatus.FAILED: JobStatus.FAILED,
    RunStatus.KILLED: JobStatus.CANCELLED,
}


def now_ms() -> int:
    return int(time.time() * 1000)


# An experiment id or page token: ASCII digits that fit a 64-bit integer (str.isdigit also takes "²",
# which int() refuses, and a 30-digit id overflows the database's integer: both were a 500).
_NUMBER = re.compile(r"[0-9]{1,18}")


def _numeric(value) -> int | None:
    text = str(value)
    return int(text) if _NUMBER.fullmatch(text) else None


def _page_offset(page_token: str) -> int:
    """The offset a page token names; MLflow's 400 for one that is not a token this API gave out."""
    if not page_token:
        return 0
    offset = _numeric(page_token)
    if offset is None:
        raise InvalidInput(f"Invalid page token {page_token!r}", code="INVALID_PARAMETER_VALUE")
    return offset


# --- experiments ------------------------------------------------------------------------------------


def _state(experiment: Experiment) -> MLflowExperiment | None:
    try:
        return experiment.mlflow_state
    except MLflowExperiment.DoesNotExist:
        return None


def experiment_object(experiment: Experiment) -> dict:
    created = int(experiment.created_at.timestamp() * 1000)
    state = _state(experiment)
    tags = state.tags if state else {}
    return {
        "experiment_id": str(experiment.pk),
        "name": experiment.name,
        "artifact_location": f"{ARTIFACTS_SCHEME}/{experiment.pk}",
        "lifecycle_stage": state.lifecycle_stage if state else ACTIVE,
        "creation_time": created,
        "last_update_time": (state.last_update_time if state else None) or created,
        "tags": [
            *({"key": k, "value": v} for k, v in tags.items()),
            {"key": "t4dm.experiment_id", "value": experiment.public_id},
        ],
    }


def experiment_default(*, owner) -> Experiment:
    experiment = Experiment.objects.filter(owner=owner, name=DEFAULT_EXPERIMENT_NAME).order_by("pk").first()
    return experiment or training.experiment_create(owner=owner, name=DEFAULT_EXPERIMENT_NAME)


def experiment_get(*, user, experiment_id: str) -> Experiment:
    if str(experiment_id) == DEFAULT_EXPERIMENT_ID:
        return experiment_default(owner=user)
    pk = _numeric(experiment_id)
    found = experiments_visible_to(user).filter(pk=pk).first() if pk is not None else None
    if found is None:
        raise NotFound(f"No Experiment with id={experiment_id} exists", code="RESOURCE_DOES_NOT_EXIST")
    return found


def experiment_get_by_name(*, user, name: str) -> Experiment:
    """The caller's own experiment of that name: an admin sees everyone's, and `mlflow.set_experiment`
    must not pick another user's experiment of the same name (and log runs into it)."""
    own = Case(When(owner=user, then=Value(0)), default=Value(1))
    found = experiments_visible_to(user).filter(name=name).order_by(own, "pk").first()
    if found is None:
        if name == DEFAULT_EXPERIMENT_NAME:
            return experiment_default(owner=user)
        raise NotFound(f"Could not find experiment with name '{name}'", code="RESOURCE_DOES_NOT_EXIST")
    return found


def _experiment_name(name) -> str:
    """MLflow's check of an experiment name; the name is kept as given (MLflow does not strip it, and
    `mlflow.set_experiment(name)` finds it again by that exact name)."""
    if not isinstance(name, str) or not name.strip():
        raise InvalidInput(f"Invalid experiment name: '{name}'", code="INVALID_PARAMETER_VALUE")
    limit = Experiment._meta.get_field("name").max_length
    if len(name) > limit:
        raise InvalidInput(
            f"Experiment name must be at most {limit} characters", code="INVALID_PARAMETER_VALUE"
        )
    return name


def _experiment_tag(key, value) -> tuple[str, str]:
    key, value = str(key), str(value)
    if not key or len(key) > MAX_ENTITY_KEY_LENGTH:
        raise InvalidInput(
            f"experiment tag key must be 1-{MAX_ENTITY_KEY_LENGTH} characters", code="INVALID_PARAMETER_VALUE"
        )
    if len(value) > MAX_EXPERIMENT_TAG_VAL_LENGTH:
        raise InvalidInput(
            f"experiment tag {key!r} value exceeds {MAX_EXPERIMENT_TAG_VAL_LENGTH} characters",
            code="INVALID_PARAMETER_VALUE",
        )
    return key, value


def _name_free(*, owner, name: str, but: Experiment | None = None) -> None:
    taken = Experiment.objects.filter(owner=owner, name=name)
    if but is not None:
        taken = taken.exclude(pk=but.pk)
    if taken.exists():
        raise InvalidInput(f"Experiment '{name}' already exists.", code="RESOURCE_ALREADY_EXISTS")


@transaction.atomic
def experiment_create(*, owner, name: str, tags: list[tuple[str, str]] | None = None) -> Experiment:
    name = _experiment_name(name)
    checked = dict(_experiment_tag(k, v) for k, v in tags or [])
    _name_free(owner=owner, name=name)
    experiment = training.experiment_create(owner=owner, name=name)
    if experiment.name != name:  # T4DM strips a name; MLflow keeps it as sent
        experiment.name = name
        experiment.save(update_fields=["name"])
    if checked:
        MLflowExperiment.objects.create(experiment=experiment, tags=checked)
    return experiment


def _experiment_active(experiment: Experiment, state: MLflowExperiment | None = None) -> None:
    state = state or _state(experiment)
    if state is not None and state.lifecycle_stage != ACTIVE:
        raise InvalidInput(
            f"The experiment {experiment.pk} must be in the 'active' state. "
            f"Current state is {state.lifecycle_stage}.",
            code="INVALID_PARAMETER_VALUE",
        )


def _state_for_update(experiment: Experiment) -> MLflowExperiment:
    state, _ = MLflowExperiment.objects.select_for_update().get_or_create(experiment=experiment)
    return state


@transaction.atomic
def experiment_set_lifecycle(*, experiment: Experiment, stage: str) -> None:
    """experiments/delete (stage "deleted") and experiments/restore ("active"): as MLflow, the
    experiment and every run in it take the stage; deleting a deleted experiment (or restoring an
    active one) is MLflow's 404."""
    state = _state_for_update(experiment)
    if state.lifecycle_stage == stage:
        raise NotFound(f"No Experiment with id={experiment.pk} exists", code="RESOURCE_DOES_NOT_EXIST")
    state.lifecycle_stage, state.last_update_time = stage, now_ms()
    state.save(update_fields=["lifecycle_stage", "last_update_time"])
    MLflowRun.objects.filter(experiment=experiment).update(lifecycle_stage=stage)


@transaction.atomic
def experiment_rename(*, experiment: Experiment, new_name: str) -> None:
    new_name = _experiment_name(new_name)
    state = _state_for_update(experiment)
    if state.lifecycle_stage != ACTIVE:
        raise InvalidInput("Cannot rename a non-active experiment.", code="INVALID_STATE")
    _name_free(owner=experiment.owner_id, name=new_name, but=experiment)
    Experiment.objects.filter(pk=experiment.pk).update(name=new_name)
    state.last_update_time = now_ms()
    state.save(update_fields=["last_update_time"])


@transaction.atomic
def experiment_tag_set(*, experiment: Experiment, key, value) -> None:
    key, value = _experiment_tag(key, value)
    state = _state_for_update(experiment)
    _experiment_active(experiment, state)
    state.tags = {**state.tags, key: value}
    state.save(update_fields=["tags"])


@transaction.atomic
def experiment_tag_delete(*, experiment: Experiment, key: str) -> None:
    state = _state_for_update(experiment)
    _experiment_active(experiment, state)
    if key not in state.tags:
        raise NotFound(
            f"No tag with name: {key} in experiment with id {experiment.pk}", code="RESOURCE_DOES_NOT_EXIST"
        )
    state.tags = {k: v for k, v in state.tags.items() if k != key}
    state.save(update_fields=["tags"])


_EXPERIMENT_ORDER_KEYS = ("name", "experiment_id", "creation_time", "last_update_time")


def _experiment_orderings(order_by: list[str] | None) -> list[tuple[str, bool]]:
    """MLflow's search_experiments order_by (`name`, `experiment_id`, `creation_time`,
    `last_update_time`, optionally `attribute.`-prefixed, ASC or DESC): (key, ascending); none given:
    newest first, then by id (MLflow's default)."""
    out = []
    for spec in order_by or ["creation_time DESC", "experiment_id ASC"]:
        field, _, direction = str(spec).strip().partition(" ")
        field = field.removeprefix("attributes.").removeprefix("attribute.").strip("`")
        direction = direction.strip().upper() or "ASC"
        if field not in _EXPERIMENT_ORDER_KEYS or direction not in ("ASC", "DESC"):
            raise InvalidInput(f"Invalid order_by clause '{spec}'", code="INVALID_PARAMETER_VALUE")
        out.append((field, direction == "ASC"))
    if not any(field == "experiment_id" for field, _ in out):
        out.append(("experiment_id", True))
    return out


def experiments_search(
    *, user, filter_string: str = "", max_results: int = 1000, page_token: str = "",
    order_by: list[str] | None = None, view_type=None,
) -> dict:  # fmt: skip
    orderings = _experiment_orderings(order_by)
    stages = lifecycle_stages(view_type)
    experiments = experiments_visible_to(user).select_related("mlflow_state")
    if ACTIVE in stages:
        experiments = experiments.exclude(
            mlflow_state__lifecycle_stage__in=[s for s in _ALL_STAGES if s not in stages]
        )
    else:
        experiments = experiments.filter(mlflow_state__lifecycle_stage__in=stages)
    tag_clauses = []
    for field, op, value, _ in _clauses(filter_string):
        entity, dot, key = field.partition(".")
        if not dot:
            entity, key = "", entity
        if entity.lower() in ("tag", "tags"):
            if op not in ("=", "!=", "LIKE", "ILIKE"):
                raise InvalidInput(
                    f"unsupported comparison {op!r} for tag {key!r}", code="INVALID_PARAMETER_VALUE"
                )
            tag_clauses.append((key, op, value))
            continue
        if key != "name" or entity.lower() not in ("", "attribute", "attributes"):
            raise InvalidInput(
                f"experiments can be filtered by name and tags only, not {field}",
                code="INVALID_PARAMETER_VALUE",
            )
        if op == "=":
            experiments = experiments.filter(name=value)
        elif op == "!=":
            experiments = experiments.exclude(name=value)
        elif op.upper() in ("LIKE", "ILIKE"):
            regex = "^" + re.escape(value).replace("%", ".*").replace("_", ".") + "$"
            experiments = experiments.filter(
                **{"name__iregex" if op.upper() == "ILIKE" else "name__regex": regex}
            )
        else:
            raise InvalidInput(f"unsupported comparison {op!r} for name", code="INVALID_PARAMETER_VALUE")
    objects = [experiment_object(e) for e in experiments]
    if tag_clauses:
        objects = [
            o for o in objects
            if all(_compare({t["key"]: t["value"] for t in o["tags"]}.get(k), op, v) for k, op, v in tag_clauses)
        ]  # fmt: skip
    for field, ascending in reversed(orderings):  # stable sorts, the last clause first
        objects.sort(
            key=lambda o, f=field: int(o[f]) if f == "experiment_id" else o[f], reverse=not ascending
        )
    return _paged(objects, "experiments", max_results, page_token)


# --- runs -------------------------------------------------------------------------------------------


def _external_dataset_version(owner) -> DatasetVersion:
    """Tracking-only jobs still need a dataset version (configs require one): a per-user empty one."""
    version = DatasetVersion.objects.filter(
        dataset__owner=owner, dataset__name=EXTERNAL_DATASET_NAME, content_hash="external"
    ).first()
    if version:
        return version
    dataset = Dataset.objects.create(
        name=EXTERNAL_DATASET_NAME,
        owner=owner,
        task_type=TaskType.CHAT,
        description="Placeholder for runs trained outside T4DM (MLflow client, T4DMCallback).",
    )
    return DatasetVersion.objects.create(
        dataset=dataset,
        number=1,
        content_hash="external",
        format="external",
        task_type=TaskType.CHAT,
        path="",
        splits={},
        statistics={},
        validation_status=ValidationStatus.PASSED,
        source="outside T4DM",
    )


@transaction.atomic
def run_create(
    *,
    owner,
    experiment: Experiment,
    run_name: str = "",
    start_time: int | None = None,
    tags: dict | None = None,
) -> MLflowRun:
    """A tracking-only TrainingJob, running from the start: no worker picks it up."""
    _experiment_active(experiment)
    start_time = _millis(start_time, "start_time") if start_time else now_ms()
    tags = {_key(str(k), "tag"): str(v)[:MAX_TAG_VAL_LENGTH] for k, v in (tags or {}).items()}
    run_name = _checked_run_name(run_name or tags.get("mlflow.runName", "") or "")
    model_base = tags.get("t4dm.model_base") or EXTERNAL_MODEL
    config = TrainingConfig.objects.create(
        owner=owner,
        experiment=experiment,
        dataset_version=_external_dataset_version(owner),
        model_base=model_base,
        approach=Approach.FULL,
        task_type=TaskType.CHAT,
        hyperparameters={},
        checkpointing={},
        estimate={},
    )
    # The run's name is the job's display name (the runs table's name column, PATCH /jobs/{id}).
    job = TrainingJob.objects.create(
        owner=owner, config=config, experiment=experiment, name=_job_name(run_name)
    )
    training.job_transition(job=job, to=JobStatus.RUNNING, worker="outside T4DM (MLflow client)")
    # Tracking-only: no worker runs it, so no worker heartbeat is due. The lost-job reaper takes running
    # jobs whose heartbeat is older than HEARTBEAT_TIMEOUT; without one this run is never declared lost
    # nor requeued for a worker, however long its client goes quiet between log calls.
    TrainingJob.objects.filter(pk=job.pk).update(heartbeat_at=None)
    training.job_event_add(job=job, message=f"tracking run {run_name or job.public_id} started outside T4DM")
    run = MLflowRun.objects.create(
        job=job,
        experiment=experiment,
        run_name=run_name or job.public_id,
        start_time=start_time,
        tags={**tags, "mlflow.runName": run_name or job.public_id, JOB_ID_TAG: job.public_id},
    )
    return run


def _checked_run_name(name: str) -> str:
    limit = MLflowRun._meta.get_field("run_name").max_length
    if len(name) > limit:
        raise InvalidInput(f"run name must be at most {limit} characters", code="INVALID_PARAMETER_VALUE")
    return name


def _job_name(run_name: str) -> str:
    """The job's display name for an MLflow run name (the job keeps at most RUN_NAME_MAX characters)."""
    return " ".join(run_name.split())[:RUN_NAME_MAX]


def run_display_name(run: MLflowRun) -> str:
    """The run's name as MLflow clients see it: the job's display name, so that a rename in T4DM
    (PATCH /jobs/{id}, the runs table) shows in runs/get and runs/search too; the MLflow name when the
    job has none."""
    return run.job.name or run.run_name


def _runs():
    return MLflowRun.objects.select_related("job__owner", "experiment")


# What run_object and the run's readers use of the run, its job and its owner: the job row is wide
# (tokens, paths, errors), and loading it whole was a good part of a runs/get.
_RUN_FIELDS = (
    *(f.name for f in MLflowRun._meta.concrete_fields),
    "job__name", "job__status", "job__latest_metrics", "job__owner_id", "job__owner__username",
)  # fmt: skip


def run_get(*, user, run_id: str) -> MLflowRun:
    missing = NotFound(f"Run with id={run_id} not found", code="RESOURCE_DOES_NOT_EXIST")
    lean = MLflowRun.objects.select_related("job__owner").only(*_RUN_FIELDS)
    return get_visible(
        lean, user, run_id, "run", lookup="run_uuid", owner_field="job__owner", missing=missing
    )


def run_get_for_logging(*, user, run_id: str) -> MLflowRun:
    """The run a `runs/log-*` request writes to, with the same sharing rule and 404 as `run_get`, but
    only the columns logging reads (no job, owner or experiment row): the fixed cost of a one-step
    request (tests/tracking/test_request_cost.py)."""
    missing = NotFound(f"Run with id={run_id} not found", code="RESOURCE_DOES_NOT_EXIST")
    lean = MLflowRun.objects.only("pk", "run_uuid", "job_id", "lifecycle_stage")
    return get_visible(
        lean, user, run_id, "run", lookup="run_uuid", owner_field="job__owner", missing=missing
    )


def _active(run: MLflowRun) -> None:
    """MLflow's refusal to change a deleted run (its _check_run_is_active)."""
    if run.lifecycle_stage != ACTIVE:
        raise InvalidInput(
            f"The run {run.run_uuid} must be in the 'active' state. Current state is {run.lifecycle_stage}.",
            code="INVALID_PARAMETER_VALUE",
        )


@transaction.atomic
def run_update(
    *, run: MLflowRun, status: str | None = None, end_time: int | None = None, run_name: str | None = None
) -> MLflowRun:
    end_time = _millis(end_time, "end_time") if end_time is not None else None
    run = MLflowRun.objects.select_for_update().select_related("job__owner").get(pk=run.pk)
    _active(run)
    fields = []
    if run_name:
        run.run_name = _checked_run_name(run_name)
        run.tags = {**run.tags, "mlflow.runName": run.run_name}
        fields += ["run_name", "tags"]
        job_update(job=run.job, name=_job_name(run.run_name))
    if status:
        if status not in RunStatus.values:
            raise InvalidInput(
                f"status must be one of {', '.join(RunStatus.values)}", code="INVALID_PARAMETER_VALUE"
            )
        run.status = status
        fields.append("status")
        job = run.job
        target = TERMINAL_RUN_STATUS.get(status)
        if target and not job.is_terminal:
            run.end_time = end_time or now_ms()
            fields.append("end_time")
            # The same effects as a job a worker ended: webhooks, live status, a waiting workflow.
            if target == JobStatus.FAILED:
                training.job_transition(job=job, to=target, error="the MLflow client ended the run as FAILED")
            else:
                training.job_transition(job=job, to=target)
            training.job_event_add(job=job, message=f"tracking run ended: {status}")
    if end_time and "end_time" not in fields:
        run.end_time = end_time
        fields.append("end_time")
    if fields:
        run.save(update_fields=list(dict.fromkeys(fields)))
    return run


def run_set_lifecycle(*, run: MLflowRun, stage: str) -> None:
    """runs/delete and runs/restore: MLflow marks the run (it keeps its data; a deleted run is left out
    of searches and refuses logging). The job stays on T4DM's dashboard."""
    MLflowRun.objects.filter(pk=run.pk).update(lifecycle_stage=stage)


@transaction.atomic
def run_tag_delete(*, run: MLflowRun, key: str) -> None:
    """runs/delete-tag: MLflow's 404 for a tag the run does not have, 400 on a deleted run."""
    locked = MLflowRun.objects.select_for_update().get(pk=run.pk)
    _active(locked)
    if key not in locked.tags:
        raise NotFound(
            f"No tag with name: {key} in run with id {run.run_uuid}", code="RESOURCE_DOES_NOT_EXIST"
        )
    locked.tags = {k: v for k, v in locked.tags.items() if k != key}
    locked.save(update_fields=["tags"])


# MLflow's limits on a logged dataset (mlflow/utils/validation.py, _validate_dataset).
_DATASET_FIELDS = {"name": 500, "digest": 36, "source_type": None, "source": 65535, "schema": 1048575,
                   "profile": 16777215}  # fmt: skip
_DATASET_REQUIRED = ("name", "digest", "source_type", "source")
MAX_INPUT_TAG_KEY_SIZE, MAX_INPUT_TAG_VALUE_SIZE = 255, 500


def _dataset_input(item) -> dict:
    dataset = item.get("dataset") if isinstance(item, dict) else None
    if not isinstance(dataset, dict):
        raise InvalidInput("Dataset cannot be None", code="INVALID_PARAMETER_VALUE")
    kept = {}
    for field, limit in _DATASET_FIELDS.items():
        value = dataset.get(field)
        if value is None:
            if field in _DATASET_REQUIRED:
                raise InvalidInput(f"Dataset {field} cannot be None", code="INVALID_PARAMETER_VALUE")
            continue
        value = str(value)
        if limit is not None and len(value) > limit:
            raise InvalidInput(
                f"'{field}' exceeds the maximum length of {limit} characters", code="INVALID_PARAMETER_VALUE"
            )
        kept[field] = value
    tags = []
    for tag in item.get("tags") or []:
        key, value = str(tag.get("key") or ""), str(tag.get("value") or "")
        if not key or len(key) > MAX_INPUT_TAG_KEY_SIZE or len(value) > MAX_INPUT_TAG_VALUE_SIZE:
            raise InvalidInput(
                f"input tag keys must be 1-{MAX_INPUT_TAG_KEY_SIZE} characters and values at most "
                f"{MAX_INPUT_TAG_VALUE_SIZE}",
                code="INVALID_PARAMETER_VALUE",
            )
        tags.append({"key": key, "value": value})
    return {"tags": tags, "dataset": kept}


@transaction.atomic
def run_log_inputs(*, run: MLflowRun, datasets: list = (), models: list = ()) -> None:
    """runs/log-inputs (`mlflow.log_input`): the datasets (and logged-model ids) a run used, shown in
    runs/get's `inputs`. As in MLflow, a dataset already logged to the run (same name and digest) is
    kept once, the first time's tags with it."""
    checked = [_dataset_input(item) for item in datasets or []]
    locked = MLflowRun.objects.select_for_update().get(pk=run.pk)
    _active(locked)
    inputs = dict(locked.inputs or {})
    dataset_inputs = list(inputs.get("dataset_inputs", []))
    seen = {(d["dataset"]["name"], d["dataset"]["digest"]) for d in dataset_inputs}
    for item in checked:
        at = (item["dataset"]["name"], item["dataset"]["digest"])
        if at not in seen:
            seen.add(at)
            dataset_inputs.append(item)
    model_inputs = list(inputs.get("model_inputs", []))
    for model in models or []:
        model_id = str(model.get("model_id") or "") if isinstance(model, dict) else ""
        if not model_id:
            raise InvalidInput("model input must have a model_id", code="INVALID_PARAMETER_VALUE")
        if {"model_id": model_id} not in model_inputs:
            model_inputs.append({"model_id": model_id})
    locked.inputs = {
        **({"dataset_inputs": dataset_inputs} if dataset_inputs else {}),
        **({"model_inputs": model_inputs} if model_inputs else {}),
    }
    locked.save(update_fields=["inputs"])


def _key(key: str, what: str) -> str:
    if not key or len(key) > MAX_ENTITY_KEY_LENGTH:
        raise InvalidInput(
            f"{what} key must be 1-{MAX_ENTITY_KEY_LENGTH} characters", code="INVALID_PARAMETER_VALUE"
        )
    return key


def run_log_batch(
    *, run: MLflowRun, metrics: list[dict] = (), params: list[dict] = (), tags: list[dict] = ()
) -> None:
    """runs/log-batch (and log-metric / log-parameter / set-tag, which are batches of one)."""
    if len(metrics) > MAX_METRICS_PER_BATCH:
        raise InvalidInput(
            f"A batch logging request can contain at most {MAX_METRICS_PER_BATCH} metrics. Got {len(metrics)} metrics.",
            code="INVALID_PARAMETER_VALUE",
        )
    for name, items in (("params", params), ("tags", tags)):
        if len(items) > MAX_PARAMS_TAGS_PER_BATCH:
            raise InvalidInput(
                f"A batch logging request can contain at most {MAX_PARAMS_TAGS_PER_BATCH} {name}. Got {len(items)}.",
                code="INVALID_PARAMETER_VALUE",
            )
    if len(metrics) + len(params) + len(tags) > MAX_ENTITIES_PER_BATCH:
        raise InvalidInput(
            f"A batch logging request can contain at most {MAX_ENTITIES_PER_BATCH} metrics, params and tags in total.",
            code="INVALID_PARAMETER_VALUE",
        )
    keys = Counter(str(p.get("key", "")) for p in params)
    if any(count > 1 for count in keys.values()):
        raise InvalidInput(
            f"Duplicate parameter keys have been submitted: {[k for k, n in keys.items() if n > 1]}. Please "
            "ensure the request contains only one param value per param key.",
            code="INVALID_PARAMETER_VALUE",
        )
    _active(run)
    body, sent, repeats = _ingest_body(metrics, received_at=now_ms())
    if params or tags:
        with transaction.atomic():
            _params_tags_store(run=run, params=params, tags=tags)
            _metrics_store(job_pk=run.job_id, body=body, sent=sent, repeats=repeats)
    else:
        # Metrics only (most batches): the ingest is its own transaction, without a savepoint inside
        # another. Extra values, when there are any, are stored right after it; a request that fails
        # between the two is retried by the client, and the retry stores them (its kept points are
        # recognised as the same ones sent again).
        _metrics_store(job_pk=run.job_id, body=body, sent=sent, repeats=repeats)


_INT64 = 2**63


def _millis(value, what: str) -> int:
    """A time in Unix ms as MLflow's int64 fields hold it: a larger one is MLflow's 400 (it overflowed
    the database's integer, a 500)."""
    value = int(value)
    if not -_INT64 <= value < _INT64:
        raise InvalidInput(f"{what} {value} is not a 64-bit integer", code="INVALID_PARAMETER_VALUE")
    return value


def _metric_value(key: str, raw) -> float:
    try:
        value = float(raw)
    except (TypeError, ValueError):
        value = math.nan
    if not math.isfinite(value):
        raise InvalidInput(
            f"metric {key!r}: value {raw!r} is not a finite number", code="INVALID_PARAMETER_VALUE"
        )
    return value


def _ingest_body(metrics, *, received_at: int) -> tuple[bytes | None, list[tuple], bool]:
    """MLflow metrics as the ingest service's request body ({"points": [...]}, wall time in seconds),
    written as text in one pass: no object per point, and on PostgreSQL the database parses it. Only
    the first value sent for a (key, step) goes in (the ingest would keep a batch's last); `sent` is
    every (key, step, timestamp, value) in arrival order, `repeats` whether a (key, step) came twice."""
    if not metrics:
        return None, [], False
    isfinite = math.isfinite
    quoted: dict[str, str] = {}  # each distinct key checked and JSON-quoted once
    seen: set[tuple[str, int]] = set()
    parts, sent, repeats = [], [], False
    for m in metrics:
        key = m.get("key", "")
        text = quoted.get(key) if type(key) is str else None
        if text is None:
            key = _key(str(key), "metric")
            text = quoted[key] = json.dumps(key)
        value = m.get("value")
        if type(value) is not float or not isfinite(value):
            value = _metric_value(key, value)
        timestamp = m.get("timestamp")
        timestamp = received_at if timestamp is None else _millis(timestamp, f"metric {key!r} timestamp")
        step = int(m.get("step") or 0)
        sent.append((key, step, timestamp, value))
        at = (key, step)
        if at in seen:
            repeats = True
            continue
        seen.add(at)
        parts.append(f'{{"key":{text},"step":{step},"value":{value!r},"wall_time":{timestamp / 1000!r}}}')
    return ('{"points":[' + ",".join(parts) + "]}").encode(), sent, repeats


def _metrics_store(*, job_pk: int, body: bytes | None, sent: list[tuple], repeats: bool) -> None:
    if body is None:
        return
    result = metric_points_ingest_body(job_pk=job_pk, body=body)
    if result.duplicates or repeats:
        _extra_values_store(job_pk=job_pk, sent=sent)


def _params_tags_store(*, run: MLflowRun, params: list[dict], tags: list[dict]) -> None:
    """Params are immutable, as in MLflow; tags are overwritten. Only a batch that carries some takes
    the run's row lock: a metrics-only batch (most of them) does not."""
    locked = MLflowRun.objects.select_for_update().get(pk=run.pk)
    new_params = dict(locked.params)
    for p in params:
        # MLflow's server keeps the first 6,000 characters of a longer value (MLFLOW_TRUNCATE_LONG_VALUES,
        # on by default) and compares that with a value already logged.
        key, value = _key(str(p.get("key", "")), "param"), str(p.get("value", ""))[:MAX_PARAM_VAL_LENGTH]
        if key in new_params and new_params[key] != value:
            raise InvalidInput(
                f"Changing param values is not allowed. Param with key='{key}' was already logged with "
                f"value='{new_params[key]}' for run ID='{run.run_uuid}'. Attempted logging new value '{value}'.",
                code="INVALID_PARAMETER_VALUE",
            )
        new_params[key] = value
    new_tags = dict(locked.tags)
    for t in tags:
        key, value = _key(str(t.get("key", "")), "tag"), str(t.get("value", ""))[:MAX_TAG_VAL_LENGTH]
        new_tags[key] = value
    locked.params, locked.tags = new_params, new_tags
    fields = ["params", "tags"]
    renamed = new_tags.get("mlflow.runName")
    if renamed and renamed != locked.run_name:
        # MLflow renames the run when its mlflow.runName tag is set (mlflow.set_tag, log_batch).
        locked.run_name = _checked_run_name(renamed)
        fields.append("run_name")
        job_update(job=TrainingJob.objects.get(pk=run.job_id), name=_job_name(renamed))
    locked.save(update_fields=fields)
    if params:
        # The run's own config shows its params, so run lists and comparisons show them as parameters.
        config_id = TrainingJob.objects.filter(pk=run.job_id).values("config_id")[:1]
        TrainingConfig.objects.filter(pk=config_id).update(hyperparameters=new_params)


def _extra_values_store(*, job_pk: int, sent: list[tuple[str, int, int, float]]) -> None:
    """MLflow keeps every value logged at one step; the ingest kept the first one sent per (key, step).
    Every other value goes to MetricValueExtra, unless it is the kept one sent again (same timestamp and value: a retry, which MLflow also stores once).
    Runs only when the ingest reported repeats, so a batch of new steps costs nothing here."""
    kept: dict[tuple[str, int], tuple[int, float]] = {}
    pairs = list({(key, step) for key, step, _, _ in sent})
    for begin in range(0, len(pairs), _LOOKUPS_PER_QUERY):
        chunk = pairs[begin : begin + _LOOKUPS_PER_QUERY]
        match = Q()
        for key, step in chunk:
            match |= Q(key=key, step=step)
        rows = MetricPoint.objects.filter(match, job_id=job_pk).values_list(
            "key", "step", "wall_time", "value"
        )
        kept.update({(key, step): (round(t * 1000), value) for key, step, t, value in rows})
    extras = dict.fromkeys(  # arrival order: get-history returns values with one timestamp in it
        (key, step, timestamp, value)
        for key, step, timestamp, value in sent
        if kept.get((key, step)) != (timestamp, value)
    )
    MetricValueExtra.objects.bulk_create(
        [MetricValueExtra(job_id=job_pk, key=k, step=s, timestamp=t, value=v) for k, s, t, v in extras],
        ignore_conflicts=True,
    )


def _latest_sql(pairs: int) -> str:
    """One statement for `pairs` (job, key) series: the point at each series' last step (found by one
    backward step of the (job, key, step) index, an uncorrelated subquery run once) and any extra
    values at that step. Written as SQL: building it with the ORM cost more than running it."""
    q = connection.ops.quote_name
    points, extras = q(MetricPoint._meta.db_table), q(MetricValueExtra._meta.db_table)
    last = f"(SELECT {q('step')} FROM {points} WHERE {q('job_id')} = %s AND {q('key')} = %s ORDER BY {q('step')} DESC LIMIT 1)"

    def where(table: str) -> str:
        one = f"({table}.{q('job_id')} = %s AND {table}.{q('key')} = %s AND {table}.{q('step')} = {last})"
        return " OR ".join([one] * pairs)

    columns = f"{q('job_id')}, {q('key')}, {q('step')}"
    return (
        f"SELECT {columns}, {q('wall_time')}, {q('value')}, 0 FROM {points} WHERE {where(points)} "
        f"UNION ALL SELECT {columns}, {q('timestamp')}, {q('value')}, 1 FROM {extras} WHERE {where(extras)}"
    )


def latest_metrics(jobs: list[TrainingJob]) -> dict[int, list[dict]]:
    """Each run's latest value per key, as MLflow picks it (highest step, then timestamp, then value),
    in one query whatever the number of stored points: the keys are those of the job's
    `latest_metrics`, which the ingest service keeps in the same transaction as the points, and only
    the rows at each key's last step are read."""
    out: dict[int, list[dict]] = {job.pk: [] for job in jobs}
    pairs = [(job.pk, key) for job in jobs for key in sorted(job.latest_metrics or {})]
    best: dict[tuple[int, str], tuple] = {}
    for begin in range(0, len(pairs), _SERIES_PER_QUERY):
        chunk = pairs[begin : begin + _SERIES_PER_QUERY]
        params = [value for job_pk, key in chunk for value in (job_pk, key, job_pk, key)]
        with connection.cursor() as cursor:
            cursor.execute(_latest_sql(len(chunk)), params + params)
            rows = cursor.fetchall()
        for job_pk, key, step, t, value, extra in rows:
            candidate = (step, int(t) if extra else round(t * 1000), value)
            seen = best.get((job_pk, key))
            if seen is None or candidate > seen:
                best[(job_pk, key)] = candidate
    for (job_pk, key), (step, timestamp, value) in sorted(best.items()):
        out[job_pk].append({"key": key, "value": value, "timestamp": timestamp, "step": step})
    return out


def run_object(run: MLflowRun, metrics: list[dict] | None = None) -> dict:
    if metrics is None:
        metrics = latest_metrics([run.job])[run.job_id]
    info = {
        "run_id": run.run_uuid,
        "run_uuid": run.run_uuid,
        "run_name": run_display_name(run),
        "experiment_id": str(run.experiment_id),
        "user_id": run.job.owner.username,
        "status": run.status,
        "start_time": run.start_time,
        "artifact_uri": f"{ARTIFACTS_SCHEME}/{run.experiment_id}/{run.run_uuid}/artifacts",
        "lifecycle_stage": run.lifecycle_stage,
    }
    if run.end_time is not None:
        info["end_time"] = run.end_time
    return {
        "info": info,
        "data": {
            "metrics": metrics,
            "params": [{"key": k, "value": v} for k, v in run.params.items()],
            "tags": [
                {"key": k, "value": run_display_name(run) if k == "mlflow.runName" else v}
                for k, v in run.tags.items()
            ],
        },
        "inputs": run.inputs or {},
    }


def metric_history(*, run: MLflowRun, key: str, max_results: int | None = None, page_token: str = "") -> dict:
    """Every value of one metric, by step, and at one step in timestamp order (MLflow's get-history).
    Without max_results all of them, as MLflow's server answers (the `mlflow` client asks once and
    ignores a page token). With it, pages of max_results steps; the token is the next page's first
    step, so a page reads its own rows through the (job, key, step) index, never the series before it."""
    if max_results is not None and not 1 <= int(max_results) <= 1_000_000:
        raise InvalidInput("max_results must be between 1 and 1000000", code="INVALID_PARAMETER_VALUE")
    first_step = _page_offset(page_token)
    points = MetricPoint.objects.filter(job_id=run.job_id, key=key, step__gte=first_step).order_by("step")
    rows = points.values_list("step", "wall_time", "value")
    rows = list(rows[: int(max_results) + 1] if max_results is not None else rows)
    out: dict = {}
    if max_results is not None and len(rows) > int(max_results):
        out["next_page_token"] = str(rows.pop()[0])
    history = [(step, round(t * 1000), value) for step, t, value in rows]
    if rows:
        extras = MetricValueExtra.objects.filter(
            job_id=run.job_id, key=key, step__gte=rows[0][0], step__lte=rows[-1][0]
        ).values_list("step", "timestamp", "value")
        extras = list(extras.order_by("step", "timestamp", "id"))
        if extras:
            history = sorted([*history, *extras], key=lambda p: (p[0], p[1]))  # stable: arrival order
    out["metrics"] = [{"key": key, "value": v, "timestamp": t, "step": s} for s, t, v in history]
    return out


# --- search -----------------------------------------------------------------------------------------

_CLAUSE = re.compile(
    r"""\s*(?P<field>[`"\w.\-/]+(?:\.(?:`[^`]+`|"[^"]+"|[\w.\-/]+))?)\s*
        (?P<op>!=|>=|<=|=|<|>|\bI?LIKE\b|\bNOT\s+IN\b|\bIN\b|\bIS\s+NOT\s+NULL\b|\bIS\s+NULL\b)\s*
        (?P<value>'[^']*'|"[^"]*"|[-+\d.eE]+|\([^)]*\))?\s*""",
    re.VERBOSE | re.IGNORECASE,
)


_METRIC_ENTITIES = ("metric", "metrics")
_PARAM_ENTITIES = ("param", "params")
_TAG_ENTITIES = ("tag", "tags")
_ATTRIBUTE_ENTITIES = ("attribute", "attributes", "attr", "run")
_ATTRIBUTES = ("run_name", "status", "run_id", "user_id", "start_time", "end_time")
_TIME_ATTRIBUTES = ("start_time", "end_time")


def _and_parts(text: str) -> list[str]:
    """The clauses of `a AND b`, split outside quotes: `tags.note = 'this and that'` is one clause."""
    parts = [""]
    for index, piece in enumerate(re.split(r"""('[^']*'|"[^"]*"|`[^`]*`)""", text)):
        if index % 2:  # a quoted value or key, kept whole
            parts[-1] += piece
            continue
        first, *rest = re.split(r"\s+AND\s+", piece, flags=re.IGNORECASE)
        parts[-1] += first
        parts.extend(rest)
    return parts


def _clauses(filter_string: str) -> list[tuple[str, str, str, bool]]:
    """MLflow's basic filter grammar: clauses joined by AND, each `entity.key <op> value`:
    (field, OP, value, quoted)."""
    if not filter_string or not filter_string.strip():
        return []
    out = []
    for part in _and_parts(filter_string.strip()):
        match = _CLAUSE.fullmatch(part)
        if not match:
            raise InvalidInput(f"could not parse filter clause {part!r}", code="INVALID_PARAMETER_VALUE")
        op, value = " ".join(match["op"].upper().split()), match["value"]
        if (value is None) != op.startswith("IS "):  # `IS NULL` takes no value, every other one does
            raise InvalidInput(f"could not parse filter clause {part!r}", code="INVALID_PARAMETER_VALUE")
        quoted = value is not None and value[:1] in "'\""
        if quoted:
            value = value[1:-1]
        elif op in ("IN", "NOT IN"):
            if not (value or "").startswith("("):
                raise InvalidInput(f"{op} takes a list: {part!r}", code="INVALID_PARAMETER_VALUE")
            value = [a if a or not b else b for a, b in re.findall(r"'([^']*)'|\"([^\"]*)\"", value)]
        out.append((match["field"].replace("`", "").replace('"', ""), op, value, quoted))
    return out


def _run_clauses(filter_string: str) -> list[tuple[str, str, str, Any]]:
    """A runs filter, every clause checked before any run is read, so that a bad filter is a 400
    INVALID_PARAMETER_VALUE (as in MLflow) whether or not there are runs to compare it with:
    (entity, key, OP, value typed for the comparison)."""
    out = []
    for field, op, raw, _ in _clauses(filter_string):
        value: Any = raw
        entity, _, key = field.partition(".")
        entity = entity.lower()
        if entity in ("run_name", "status", "user_id", "start_time", "end_time", "run_id", "created"):
            entity, key = "attributes", entity
        if isinstance(value, list) and not (entity in _ATTRIBUTE_ENTITIES and key == "run_id"):
            raise InvalidInput(
                f"{op} is only supported for attributes.run_id", code="INVALID_PARAMETER_VALUE"
            )
        if op.startswith("IS ") and entity not in _PARAM_ENTITIES + _TAG_ENTITIES:
            raise InvalidInput(f"{op} is only supported for params and tags", code="INVALID_PARAMETER_VALUE")
        if entity in _METRIC_ENTITIES:
            if op in ("LIKE", "ILIKE"):
                raise InvalidInput(
                    f"invalid comparator {op!r} for metric {key!r}", code="INVALID_PARAMETER_VALUE"
                )
            value = _number(raw, f"metric {key!r}", float)
        elif entity in _ATTRIBUTE_ENTITIES:
            key = _ATTRIBUTE_ALIASES.get(key, key)
            if key not in _ATTRIBUTES:
                raise InvalidInput(f"unsupported attribute {key!r} in filter", code="INVALID_PARAMETER_VALUE")
            if key in _TIME_ATTRIBUTES:
                value = _number(raw, f"attribute {key!r}", int)
        elif entity not in _PARAM_ENTITIES + _TAG_ENTITIES:
            raise InvalidInput(f"unsupported filter field {field!r}", code="INVALID_PARAMETER_VALUE")
        out.append((entity, key, op, value))
    return out


def _number(value: str, what: str, kind):
    try:
        return kind(value)
    except (TypeError, ValueError):
        raise InvalidInput(
            f"expected a numeric value for {what}, got {value!r}", code="INVALID_PARAMETER_VALUE"
        ) from None


def _compare(left, op: str, right) -> bool:
    if op in ("IS NULL", "IS NOT NULL"):
        return (left is None) == (op == "IS NULL")
    if left is None:
        return False
    if op in ("IN", "NOT IN"):
        return (str(left) in right) == (op == "IN")
    if op in ("LIKE", "ILIKE"):
        regex = "^" + re.escape(str(right)).replace("%", ".*").replace("_", ".") + "$"
        return (
            re.match(regex, str(left), re.IGNORECASE | re.DOTALL if op == "ILIKE" else re.DOTALL) is not None
        )
    if isinstance(right, str):
        left = str(left)
    return {"=": left == right, "!=": left != right, "<": left < right, "<=": left <= right,
            ">": left > right, ">=": left >= right}[op]  # fmt: skip


def _matches(obj: dict, clauses) -> bool:
    metrics = {m["key"]: m["value"] for m in obj["data"]["metrics"]}
    params = {p["key"]: p["value"] for p in obj["data"]["params"]}
    tags = {t["key"]: t["value"] for t in obj["data"]["tags"]}
    for entity, key, op, value in clauses:
        if entity in _METRIC_ENTITIES:
            actual = metrics.get(key)
        elif entity in _PARAM_ENTITIES:
            actual = params.get(key)
        elif entity in _TAG_ENTITIES:
            actual = tags.get(key)
        else:
            actual = obj["info"].get(key)
        if not _compare(actual, op, value):
            return False
    return True


def runs_search(
    *,
    user,
    experiment_ids: list[str],
    filter_string: str = "",
    max_results: int = 1000,
    page_token: str = "",
    order_by: list[str] | None = None,
    run_view_type=None,
) -> dict:
    clauses = _run_clauses(filter_string)
    orderings = _orderings(order_by)
    stages = lifecycle_stages(run_view_type)
    experiments = [experiment_get(user=user, experiment_id=e) for e in experiment_ids]
    lean = MLflowRun.objects.select_related("job__owner").only(*_RUN_FIELDS)
    runs = visible(lean, user, owner_field="job__owner")
    runs = list(runs.filter(experiment__in=experiments, lifecycle_stage__in=stages))
    latest = latest_metrics([r.job for r in runs])
    objects = [obj for obj in (run_object(r, latest[r.job_id]) for r in runs) if _matches(obj, clauses)]
    # MLflow's natural order (newest first, then by run id), then each order_by clause, last one first:
    # the sort is stable (mlflow/utils/search_utils.py, SearchUtils.sort).
    objects.sort(key=lambda o: (-o["info"]["start_time"], o["info"]["run_id"]))
    for entity, key, ascending in reversed(orderings):
        objects.sort(
            key=lambda o, e=entity, k=key, a=ascending: _sort_value(o, e, k, a), reverse=not ascending
        )
    return _paged(objects, "runs", max_results, page_token)


_ORDER_ENTITIES = {
    **dict.fromkeys(("metric", "metrics"), "metric"),
    **dict.fromkeys(("param", "params", "parameter", "parameters"), "param"),
    **dict.fromkeys(("tag", "tags"), "tag"),
    **dict.fromkeys(("attribute", "attributes", "attr", "run"), "attribute"),
}
_ORDER_ATTRIBUTES = ("run_id", "run_name", "user_id", "status", "start_time", "end_time", "artifact_uri")
_ATTRIBUTE_ALIASES = {"created": "start_time", "Created": "start_time", "run name": "run_name",
                      "Run name": "run_name", "Run Name": "run_name"}  # fmt: skip


def _orderings(order_by: list[str] | None) -> list[tuple[str, str, bool]]:
    """MLflow's order_by clauses (`metrics.loss DESC`, ``params.`lr` ``, `start_time`), checked before
    any run is read: (entity, key, ascending). An unknown entity or attribute is MLflow's 400."""
    out: list[tuple[str, str, bool]] = []
    for spec in order_by or []:
        bad = InvalidInput(
            f"Invalid order_by clause '{spec}'. Could not be parsed.", code="INVALID_PARAMETER_VALUE"
        )
        try:
            tokens = shlex.split(str(spec).replace("`", '"'))
        except ValueError:
            raise bad from None
        if not 1 <= len(tokens) <= 2 or (len(tokens) == 2 and tokens[1].lower() not in ("asc", "desc")):
            raise bad
        ascending = len(tokens) == 1 or tokens[1].lower() == "asc"
        entity, dot, key = tokens[0].partition(".")
        if not dot:
            entity, key = "attribute", entity
        if entity not in _ORDER_ENTITIES or not key:
            raise InvalidInput(
                f"Invalid order_by entity '{entity}' in '{spec}'", code="INVALID_PARAMETER_VALUE"
            )
        entity = _ORDER_ENTITIES[entity]
        if entity == "attribute":
            key = _ATTRIBUTE_ALIASES.get(key, key)
            if key not in _ORDER_ATTRIBUTES:
                raise InvalidInput(
                    f"Invalid attribute key '{key}' in order_by: one of {', '.join(_ORDER_ATTRIBUTES)}",
                    code="INVALID_PARAMETER_VALUE",
                )
        if any((entity, key) == (e, k) for e, k, _ in out):
            raise InvalidInput(
                f"`order_by` contains duplicate fields: {order_by}", code="INVALID_PARAMETER_VALUE"
            )
        out.append((entity, key, ascending))
    return out


def _sort_value(obj: dict, entity: str, key: str, ascending: bool) -> tuple:
    """MLflow's sort key (SearchUtils._get_value_for_sort): a run without the value comes last in
    either direction, a NaN metric just before them."""
    if entity == "attribute":
        value = obj["info"].get(key)
    else:
        section = {"metric": "metrics", "param": "params", "tag": "tags"}[entity]
        value = next((item["value"] for item in obj["data"][section] if item["key"] == key), None)
    is_none = value is None
    is_nan = isinstance(value, float) and math.isnan(value)
    fill = (1 if ascending else -1) * math.inf
    if is_none:
        value = fill
    elif is_nan:
        value = -fill
    missing = is_none or is_nan
    return (missing, value) if ascending else (not missing, value)


_VIEW_TYPES = {"ACTIVE_ONLY": ("active",), "DELETED_ONLY": ("deleted",), "ALL": ("active", "deleted")}
_VIEW_TYPE_NUMBERS = {1: "ACTIVE_ONLY", 2: "DELETED_ONLY", 3: "ALL"}  # the proto enum's values


def lifecycle_stages(view_type) -> tuple[str, ...]:
    """The lifecycle stages a `view_type` / `run_view_type` (MLflow's ViewType, by name or number)
    lists; none given: the active ones, as in MLflow."""
    if view_type is None or view_type == "":
        return _VIEW_TYPES["ACTIVE_ONLY"]
    name = _VIEW_TYPE_NUMBERS.get(view_type) if isinstance(view_type, int) else str(view_type).upper()
    if name not in _VIEW_TYPES:
        raise InvalidInput(
            f"Invalid view type {view_type!r}: one of {', '.join(_VIEW_TYPES)}",
            code="INVALID_PARAMETER_VALUE",
        )
    return _VIEW_TYPES[name]


def _paged(objects: list[dict], name: str, max_results: int, page_token: str) -> dict:
    if max_results is not None and not 1 <= int(max_results) <= 50000:
        raise InvalidInput("max_results must be between 1 and 50000", code="INVALID_PARAMETER_VALUE")
    start = _page_offset(page_token)
    end = start + int(max_results or 1000)
    out: dict = {name: objects[start:end]}
    if end < len(objects):
        out["next_page_token"] = str(end)
    return out


def check_not_finished(run: MLflowRun) -> None:
    if run.job.status == JobStatus.CANCELLED:
        raise Conflict(f"run {run.run_uuid} was cancelled", code="INVALID_STATE")
