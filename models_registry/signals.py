"""The registry as a subscriber of other apps' lifecycle events.

An evaluation that finishes (or whose metrics change afterwards) updates the versions it evaluates:
their evaluation metrics and their generated model cards, so the gate's documentation item reads a
card that describes the evaluation. The evaluation engine knows nothing of the registry.
"""

from __future__ import annotations

import logging

from django.db.models.signals import post_save

log = logging.getLogger(__name__)

WATCHED_FIELDS = {"status", "metrics", "comparison_to_base", "job"}


def evaluation_saved(sender, instance, created, update_fields=None, **kwargs) -> None:
    from experiments.models import EvaluationStatus
    from models_registry.services import model_cards_refresh

    if instance.status != EvaluationStatus.SUCCEEDED:
        return
    if update_fields is not None and not WATCHED_FIELDS & set(update_fields):
        return
    try:
        model_cards_refresh(evaluation=instance)
    except Exception:  # a registry problem must not fail or hide the stored evaluation
        log.exception("model cards after %s not refreshed", getattr(instance, "public_id", instance.pk))


def connect() -> None:
    from experiments.models import Evaluation

    post_save.connect(evaluation_saved, sender=Evaluation, dispatch_uid="models_registry.evaluation_saved")
