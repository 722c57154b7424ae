"""Lifecycle events: what happened to a job, an evaluation, a model version or a workflow, and who
reacts to it.

A service that changes state publishes one event (``publish(JobStatusChanged(...))``); it never calls
the registry, the workflows, the webhooks or the websockets itself. The reactions are the subscribers
in ``SUBSCRIBERS`` below, the one table to read to know what a state change causes.

The rule: subscribers run after the transaction that published the event commits, in the table's
order, each on its own (one that raises is logged and the next still runs), so nothing reacts to a
change that a rollback takes back. The exception is a subscriber that only writes an outbox row
(the webhook delivery log, the workflow, evaluation and dataset pages' updates): it runs in the publisher's transaction, inside a savepoint, so the row
commits or rolls back with the change it reports and is never lost between the commit and a crash.

Events carry ids and the few values a subscriber cannot read back later (the status the event was
about, the worker's result); subscribers load what else they need. Event names follow the webhook
vocabulary (``job.succeeded``, ``evaluation.completed``, ``model_version.created``, ...), which each
event gives as ``webhook_type``.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from django.db import transaction
from django.utils.module_loading import import_string

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class JobStatusChanged:
    """A training job moved to ``status`` (queued, running, succeeded, failed, cancelled)."""

    job_pk: int
    status: str
    previous: str = ""
    result: dict[str, Any] | None = field(default=None, compare=False)  # the worker's, on success

    @property
    def webhook_type(self) -> str:
        return f"job.{self.status}"

    @property
    def is_terminal(self) -> bool:
        return self.status in ("succeeded", "failed", "cancelled")


@dataclass(frozen=True)
class JobCancelRequested:
    """A running job was asked to stop; its worker stops at its next step (no status change yet)."""

    job_pk: int


@dataclass(frozen=True)
class EvaluationFinished:
    """An evaluation ended (``status``: succeeded or failed)."""

    evaluation_pk: int
    status: str

    @property
    def webhook_type(self) -> str:
        return "evaluation.completed" if self.status == "succeeded" else "evaluation.failed"


@dataclass(frozen=True)
class EvaluationProgressed:
    """A queued evaluation started running, or its worker reported progress (the page's outbox only,
    no webhook)."""

    evaluation_pk: int
    status: str
    webhook_type = "evaluation.progress"


@dataclass(frozen=True)
class ModelVersionCreated:
    """A version was registered; ``automatic`` when auto_version registered it for a finished job."""

    version_pk: int
    automatic: bool = False
    webhook_type = "model_version.created"


@dataclass(frozen=True)
class ModelVersionStageChanged:
    version_pk: int
    from_stage: str
    to_stage: str
    actor: str
    webhook_type = "model_version.stage_changed"


@dataclass(frozen=True)
class WorkflowChanged:
    """A workflow or one of its steps changed. ``webhook_type`` is workflow.step_succeeded,
    workflow.step_failed, workflow.succeeded or workflow.failed (also webhooks), or workflow.running,
    workflow.step_running, workflow.step_updated (the workflow page's outbox only)."""

    workflow_pk: int
    webhook_type: str
    step_pk: int | None = None


@dataclass(frozen=True)
class DatasetTaskChanged:
    """A dataset task (augment, prepare) started, reported progress, or ended (the dataset page's
    outbox only, no webhook)."""

    task_pk: int
    status: str

    @property
    def webhook_type(self) -> str:
        return f"dataset_task.{self.status}"


@dataclass(frozen=True)
class HumanEvalChanged:
    """A human evaluation's outputs progressed or are ready (or failed), or an evaluator submitted or
    changed a rating (the results page's outbox only, no webhook). ``webhook_type`` is
    human_eval.progress, .ready, .failed, .rated or .rating_changed."""

    task_pk: int
    webhook_type: str


# event → its subscribers, in the order they run (dotted paths, resolved once in wire()).
SUBSCRIBERS: dict[type, list[str]] = {
    JobStatusChanged: [
        "experiments.subscribers.job_webhook",  # in the transaction: the delivery log row
        "experiments.subscribers.job_status_broadcast",  # the job page's websocket
        "models_registry.subscribers.version_auto_create",  # succeeded → a version (auto_version)
        # after auto-version, so the train step's output and the promote step find the version
        "experiments.workflows.subscribers.workflow_job_finished",
        "experiments.subscribers.worker_throughput",  # succeeded → the worker's measured tokens/s
    ],
    JobCancelRequested: [
        "experiments.subscribers.job_status_broadcast",
    ],
    EvaluationProgressed: [
        "experiments.evaluation.subscribers.evaluation_outbox",  # in the transaction: the page's outbox row
        "experiments.evaluation.subscribers.evaluation_live_wake",  # the page's websockets read the outbox
    ],
    EvaluationFinished: [
        "experiments.evaluation.subscribers.evaluation_webhook",  # in the transaction
        "experiments.evaluation.subscribers.evaluation_outbox",  # in the transaction
        "experiments.workflows.subscribers.workflow_evaluation_finished",
        "experiments.evaluation.subscribers.evaluation_live_wake",
    ],
    ModelVersionCreated: [
        "models_registry.subscribers.version_webhook",  # in the transaction
        "experiments.evaluation.subscribers.compare_to_base",  # automatic versions: evaluate vs base
    ],
    ModelVersionStageChanged: [
        "models_registry.subscribers.version_webhook",  # in the transaction
    ],
    DatasetTaskChanged: [
        "datasets_app.subscribers.dataset_task_outbox",  # in the transaction: the page's outbox row
        "datasets_app.subscribers.dataset_task_live_wake",  # the page's websockets read the outbox
        # an OpenAI fine-tuning job's combined files: queue the job, or fail it naming the file
        "experiments.openai_compat.subscribers.validation_files_done",
    ],
    HumanEvalChanged: [
        "experiments.human_eval.subscribers.human_eval_outbox",  # in the transaction: the page's outbox row
        "experiments.human_eval.subscribers.human_eval_live_wake",  # the page's websockets read the outbox
    ],
    WorkflowChanged: [
        "experiments.workflows.subscribers.workflow_webhook",  # in the transaction (webhook types only)
        "experiments.workflows.subscribers.workflow_outbox",  # in the transaction: the page's outbox row
        "experiments.workflows.subscribers.workflow_live_wake",  # the page's websockets read the outbox
    ],
}

# Subscribers that only write an outbox row: they run in the publisher's transaction (see the module doc).
IN_TRANSACTION = frozenset(
    {
        "experiments.subscribers.job_webhook",
        "experiments.evaluation.subscribers.evaluation_webhook",
        "models_registry.subscribers.version_webhook",
        "experiments.workflows.subscribers.workflow_webhook",
        "experiments.workflows.subscribers.workflow_outbox",
        "experiments.evaluation.subscribers.evaluation_outbox",
        "datasets_app.subscribers.dataset_task_outbox",
        "experiments.human_eval.subscribers.human_eval_outbox",
    }
)

_resolved: dict[type, list[tuple[str, Callable[[Any], None]]]] = {}


def wire(table: dict[type, list[str]] | None = None) -> None:
    """Resolve the table's dotted paths (from an AppConfig.ready(), once every app is loaded): a typo in
    the table fails at startup, not at the first event."""
    _resolved.clear()
    for event_type, names in (table or SUBSCRIBERS).items():
        _resolved[event_type] = [(name, import_string(name)) for name in names]


def subscribers_of(event_type: type) -> list[tuple[str, Callable[[Any], None]]]:
    if not _resolved:
        wire()
    return _resolved.get(event_type, [])


def publish(event: object) -> None:
    """Run ``event``'s subscribers: outbox writers now, in a savepoint; the others after commit."""
    for name, subscriber in subscribers_of(type(event)):
        if name in IN_TRANSACTION:
            _run_in_transaction(name, subscriber, event)
        else:
            transaction.on_commit(_after_commit(name, subscriber, event))


def _after_commit(name: str, subscriber: Callable[[Any], None], event: object) -> Callable[[], None]:
    def run() -> None:
        _run(name, subscriber, event)

    run.__qualname__ = f"publish:{name}"  # what a test's captured on_commit callbacks show
    return run


def _run(name: str, subscriber: Callable[[Any], None], event: object) -> None:
    try:
        subscriber(event)
    except Exception:  # robust: one failing subscriber never stops the others, nor undoes the change
        log.exception("subscriber %s of %r failed", name, event)


def _run_in_transaction(name: str, subscriber: Callable[[Any], None], event: object) -> None:
    try:
        with transaction.atomic():  # a savepoint: a failing outbox write leaves the change intact
            subscriber(event)
    except Exception:
        log.exception("subscriber %s of %r failed", name, event)
