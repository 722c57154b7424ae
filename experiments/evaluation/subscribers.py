"""Subscribers of lifecycle events (the table is t4dm_site.events.SUBSCRIBERS): compare_to_base for a
new automatic version, and the evaluation.* webhooks."""

from __future__ import annotations

import logging

from experiments.evaluation.selectors import evaluation_to_dict
from experiments.evaluation.services import evaluation_start
from experiments.integrations.events import emit
from experiments.models import Evaluation
from models_registry.models import ModelVersion
from models_registry.services import versioning_settings
from t4dm_site.errors import DomainError
from t4dm_site.events import EvaluationFinished, ModelVersionCreated

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
