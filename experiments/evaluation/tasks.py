"""The evaluation Celery task: thin. Load by id, run the service, which calls the engine and stores."""

from __future__ import annotations

from celery import shared_task

from experiments.evaluation.services import evaluation_run
from experiments.models import Evaluation


@shared_task(name="experiments.evaluate", acks_late=True, reject_on_worker_lost=True)
def evaluate_task(evaluation_pk: int) -> str:
    evaluation = evaluation_run(evaluation=Evaluation.objects.get(pk=evaluation_pk))
    return f"{evaluation.public_id} {evaluation.status}"
