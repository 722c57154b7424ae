"""The one subscriber table, and publish()'s rule: outbox writers in the transaction, the rest after
commit, in order, each on its own."""

from __future__ import annotations

import logging

import pytest

from t4dm_site import events
from t4dm_site.events import (
    DatasetTaskChanged,
    EvaluationFinished,
    EvaluationProgressed,
    HumanEvalChanged,
    JobCancelRequested,
    JobStatusChanged,
    ModelVersionCreated,
    ModelVersionStageChanged,
    WorkflowChanged,
)


def test_the_subscriber_table():
    assert events.SUBSCRIBERS == {
        JobStatusChanged: [
            "experiments.subscribers.job_webhook",
            "experiments.subscribers.job_status_broadcast",
            "models_registry.subscribers.version_auto_create",
            "experiments.workflows.subscribers.workflow_job_finished",
            "experiments.subscribers.worker_throughput",
        ],
        JobCancelRequested: ["experiments.subscribers.job_status_broadcast"],
        EvaluationProgressed: [
            "experiments.evaluation.subscribers.evaluation_outbox",
            "experiments.evaluation.subscribers.evaluation_live_wake",
        ],
        EvaluationFinished: [
            "experiments.evaluation.subscribers.evaluation_webhook",
            "experiments.evaluation.subscribers.evaluation_outbox",
            "experiments.workflows.subscribers.workflow_evaluation_finished",
            "experiments.evaluation.subscribers.evaluation_live_wake",
        ],
        ModelVersionCreated: [
            "models_registry.subscribers.version_webhook",
            "experiments.evaluation.subscribers.compare_to_base",
        ],
        ModelVersionStageChanged: ["models_registry.subscribers.version_webhook"],
        DatasetTaskChanged: [
            "datasets_app.subscribers.dataset_task_outbox",
            "datasets_app.subscribers.dataset_task_live_wake",
            "experiments.openai_compat.subscribers.validation_files_done",
        ],
        HumanEvalChanged: [
            "experiments.human_eval.subscribers.human_eval_outbox",
            "experiments.human_eval.subscribers.human_eval_live_wake",
        ],
        WorkflowChanged: [
            "experiments.workflows.subscribers.workflow_webhook",
            "experiments.workflows.subscribers.workflow_outbox",
            "experiments.workflows.subscribers.workflow_live_wake",
        ],
    }
    # only outbox rows (the webhook delivery log, the workflow page's updates) are written in the
    # publisher's transaction
    assert events.IN_TRANSACTION == {
        "experiments.subscribers.job_webhook",
        "experiments.evaluation.subscribers.evaluation_webhook",
        "models_registry.subscribers.version_webhook",
        "experiments.workflows.subscribers.workflow_webhook",
        "experiments.workflows.subscribers.workflow_outbox",
        "experiments.evaluation.subscribers.evaluation_outbox",
        "datasets_app.subscribers.dataset_task_outbox",
        "experiments.human_eval.subscribers.human_eval_outbox",
    }
    # wired at startup (T4dmSiteConfig.ready): every path resolves to a function
    for event_type, names in events.SUBSCRIBERS.items():
        assert [name for name, _ in events.subscribers_of(event_type)] == names
        assert all(callable(subscriber) for _, subscriber in events.subscribers_of(event_type))


def test_events_are_frozen():
    event = JobStatusChanged(job_pk=1, status="succeeded")
    with pytest.raises(AttributeError):
        event.status = "failed"
    assert event.webhook_type == "job.succeeded" and event.is_terminal
    assert EvaluationFinished(evaluation_pk=1, status="failed").webhook_type == "evaluation.failed"


ran: list[str] = []


def _first(event):
    ran.append("first")


def _broken(event):
    raise RuntimeError("this subscriber is broken")


def _last(event):
    ran.append("last")


def _outbox(event):
    ran.append("outbox")


@pytest.fixture
def table():
    ran.clear()
    here = __name__
    events.wire(
        {JobCancelRequested: [f"{here}._first", f"{here}._broken", f"{here}._outbox", f"{here}._last"]}
    )
    original = events.IN_TRANSACTION
    events.IN_TRANSACTION = frozenset({f"{here}._outbox"})
    yield
    events.IN_TRANSACTION = original
    events.wire()


@pytest.mark.django_db
def test_subscribers_run_after_commit_in_order_and_a_failing_one_is_logged(
    table, caplog, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        events.publish(JobCancelRequested(job_pk=7))
    assert ran == ["outbox"]  # the outbox writer ran in the transaction; the rest wait for the commit
    with caplog.at_level(logging.ERROR, logger="t4dm_site.events"):
        for callback in callbacks:
            callback()
    assert ran == ["outbox", "first", "last"]  # the broken one did not stop the last one
    assert "_broken" in caplog.text and "this subscriber is broken" in caplog.text


@pytest.mark.django_db(transaction=True)
def test_a_rollback_runs_no_after_commit_subscriber(table):
    from django.db import transaction

    with pytest.raises(ZeroDivisionError), transaction.atomic():
        events.publish(JobCancelRequested(job_pk=7))
        1 / 0  # noqa: B018
    assert ran == ["outbox"]  # its row rolled back with the change
    events.publish(JobCancelRequested(job_pk=7))  # no transaction: committed at once, run at once
    assert ran == ["outbox", "first", "outbox", "last"]  # in the table's order
