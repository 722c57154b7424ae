"""Issue 19: the workflow page's websocket was a near-copy of t4dm_site/live_outbox.py (its own
watcher, catch-up and cursor code). It is an OutboxConsumer now, like the evaluation and dataset task
sockets, and the three outbox models share one abstract base (no schema change)."""

from __future__ import annotations

import inspect

from datasets_app.consumers import DatasetTaskConsumer
from datasets_app.models import DatasetTaskUpdate
from experiments.evaluation.consumers import EvaluationConsumer
from experiments.evaluation.models import EvaluationUpdate
from experiments.workflows import consumers as workflow_consumers
from experiments.workflows.live import WORKFLOW_OUTBOX
from experiments.workflows.models import WorkflowUpdate
from t4dm_site.live_outbox import OutboxConsumer
from t4dm_site.models import OutboxUpdate


def test_every_live_outbox_socket_is_an_outbox_consumer():
    for consumer in (workflow_consumers.WorkflowConsumer, EvaluationConsumer, DatasetTaskConsumer):
        assert issubclass(consumer, OutboxConsumer), consumer
    # no copy of the machinery left in the workflow consumer
    source = inspect.getsource(workflow_consumers)
    for copied in ("class OutboxWatcher", "def _catch_up", "_watchers", "def _after"):
        assert copied not in source
    assert WORKFLOW_OUTBOX.model is WorkflowUpdate and WORKFLOW_OUTBOX.group(7) == "workflow-7"


def test_the_outbox_models_share_one_abstract_base():
    for model, field in (
        (WorkflowUpdate, "workflow"),
        (EvaluationUpdate, "evaluation"),
        (DatasetTaskUpdate, "task"),
    ):
        assert issubclass(model, OutboxUpdate) and model.record_field == field
        assert model._meta.ordering == ["id"] and len(model._meta.indexes) == 1
        assert {f.name for f in model._meta.get_fields()} >= {"id", field, "kind", "payload", "created_at"}
