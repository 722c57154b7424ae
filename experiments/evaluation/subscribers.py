"""Subscribers of lifecycle events (the table is t4dm_site.events.SUBSCRIBERS): compare_to_base for a
new automatic version, the evaluation.* webhooks, and the evaluation page's outbox and its wake-up."""

from __future__ import annotations

import logging

from experiments.evaluation.models import Evaluation, EvaluationUpdate
from experiments.evaluation.selectors import _server_path_pattern, evaluation_to_dict, named, public_names
from experiments.evaluation.services import evaluation_start
from experiments.integrations.events import emit
from models_registry.models import ModelVersion
from models_registry.services import versioning_settings
from t4dm_site.errors import DomainError
from t4dm_site.events import EvaluationFinished, EvaluationProgressed, ModelVersionCreated
from t4dm_site.live_outbox import Outbox

log = logging.getLogger(__name__)


def compare_to_base(event: ModelVersionCreated) -> None:
    """compare_to_base: queue an evaluation of an automatic version against its base model (the gate's
    metrics and comparison items read it when it finishes). A provider's model (OpenAI) has no local
    weights to evaluate."""
    if not event.automatic or not versioning_settings()["compare_to_base"]:
        return
    version = ModelVersion.objects.select_related("job__owner").get(pk=event.version_pk)
    if version.job is None or version.provider != "local":
        return
    try:
        evaluation_start(owner=version.job.owner, model_path=version.ref, compare_to_base=True)
    except DomainError as exc:  # e.g. a dataset without a test split: the version stays, unevaluated
        log.warning("compare_to_base for %s not started: %s", version.ref, exc.message)


def evaluation_webhook(event: EvaluationFinished) -> None:
    """Webhooks: evaluation.completed / evaluation.failed (recorded in the transaction)."""
    evaluation = Evaluation.objects.get(pk=event.evaluation_pk)
    emit(event.webhook_type, {"evaluation": evaluation_to_dict(evaluation)})


# The evaluation page's live channel (t4dm_site/live_outbox.py): its websocket is
# experiments/evaluation/consumers.py.
EVALUATION_OUTBOX = Outbox(
    model_label="experiments.EvaluationUpdate",
    record_field="evaluation",
    group_prefix="evaluation",
    wake_type="evaluation.changed",
    fallback_setting="WS_EVALUATION_FALLBACK_SECONDS",
)


def evaluation_live(evaluation: Evaluation) -> dict:
    """What the page's progress bar shows: the status and progress now, with the model named as the
    caller named it (the worker's server paths never leave the server, as in evaluation_to_dict)."""
    data = {
        "evaluation_id": evaluation.public_id,
        "status": evaluation.status,
        "progress": evaluation.progress,
        "progress_message": evaluation.progress_message,
        "error": evaluation.error,
        "finished_at": evaluation.finished_at.isoformat() if evaluation.finished_at else None,
    }
    return named(data, public_names(evaluation), _server_path_pattern())


def evaluation_outbox(event: EvaluationProgressed | EvaluationFinished) -> None:
    """The evaluation page's outbox row (in the transaction): its status and progress now."""
    evaluation = Evaluation.objects.get(pk=event.evaluation_pk)
    EvaluationUpdate.objects.create(
        evaluation=evaluation, kind=event.webhook_type, payload=evaluation_live(evaluation)
    )


def evaluation_live_wake(event: EvaluationProgressed | EvaluationFinished) -> None:
    """After commit: tell the evaluation's websockets (in any process the layer reaches) to read the outbox."""
    EVALUATION_OUTBOX.wake(event.evaluation_pk)
