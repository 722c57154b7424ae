"""The human-eval Celery task: thin. Load by id, generate outputs and build items (worker with DB)."""

from __future__ import annotations

from celery import shared_task

from experiments.human_eval.models import HumanEvalTask
from experiments.human_eval.services import human_eval_generate


@shared_task(name="experiments.human_eval.generate", acks_late=True, reject_on_worker_lost=True)
def human_eval_generate_task(task_pk: int) -> str:
    task = human_eval_generate(task=HumanEvalTask.objects.get(pk=task_pk))
    return f"{task.public_id} {task.status}"
