"""One thin Celery task per workflow step: load by id, run the step's service. Dataset steps need
the database, so they go to the dataset queue; the evaluate step to the evaluation queue."""

from __future__ import annotations

from celery import shared_task

from experiments.workflows.models import StepName
from experiments.workflows.services import workflow_step_run


def _run(step_pk: int) -> str:
    step = workflow_step_run(step_pk=step_pk)
    return f"step {step_pk}: {step.status if step else 'already ran'}"


@shared_task(name="workflows.prepare", acks_late=True, reject_on_worker_lost=True)
def prepare_step(step_pk: int) -> str:
    return _run(step_pk)


@shared_task(name="workflows.validate", acks_late=True, reject_on_worker_lost=True)
def validate_step(step_pk: int) -> str:
    return _run(step_pk)


@shared_task(name="workflows.configure", acks_late=True, reject_on_worker_lost=True)
def configure_step(step_pk: int) -> str:
    return _run(step_pk)


@shared_task(name="workflows.train", acks_late=True, reject_on_worker_lost=True)
def train_step(step_pk: int) -> str:
    return _run(step_pk)


@shared_task(name="workflows.evaluate", acks_late=True, reject_on_worker_lost=True)
def evaluate_step(step_pk: int) -> str:
    return _run(step_pk)


@shared_task(name="workflows.version", acks_late=True, reject_on_worker_lost=True)
def version_step(step_pk: int) -> str:
    return _run(step_pk)


@shared_task(name="workflows.promote", acks_late=True, reject_on_worker_lost=True)
def promote_step(step_pk: int) -> str:
    return _run(step_pk)


STEP_TASKS = {
    StepName.PREPARE: prepare_step,
    StepName.VALIDATE: validate_step,
    StepName.CONFIGURE: configure_step,
    StepName.TRAIN: train_step,
    StepName.EVALUATE: evaluate_step,
    StepName.VERSION: version_step,
    StepName.PROMOTE: promote_step,
}
