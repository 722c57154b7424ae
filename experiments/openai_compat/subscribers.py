"""Subscribers of lifecycle events (the table is t4dm_site.events.SUBSCRIBERS): a fine-tuning job whose
training and validation files were combined on the dataset worker is queued, or failed with the refusal
naming the file, once that dataset task ends."""

from __future__ import annotations

from datasets_app.models import DatasetTask
from experiments.openai_compat.services import VALIDATION_TASK_KIND, job_files_validated
from t4dm_site.events import DatasetTaskChanged


def validation_files_done(event: DatasetTaskChanged) -> None:
    """After commit: the combine task (kind VALIDATION_TASK_KIND) succeeded or failed → the job reacts."""
    if event.status not in ("succeeded", "failed"):
        return
    task = (
        DatasetTask.objects.select_related("owner", "result_version__dataset")
        .filter(pk=event.task_pk, kind=VALIDATION_TASK_KIND)
        .first()
    )
    if task is not None:
        job_files_validated(task=task)
