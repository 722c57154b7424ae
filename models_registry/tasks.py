"""Registry tasks. Serving: one completion request on a serving worker (models_registry/serving/). Export:
a version page's export, run on a worker (EVAL_QUEUE)."""

from __future__ import annotations

from celery import shared_task


# Acknowledged on receipt, not late: a redelivered request would generate for a client that already
# got part of its answer (or gave up); the client retries instead.
@shared_task(name="serving.generate", acks_late=False, ignore_result=True)
def serving_generate(spec: dict, reply: str) -> str:
    from models_registry.serving.worker import serve

    return serve(spec, reply)


@shared_task(name="registry.export", acks_late=True, reject_on_worker_lost=True)
def export_version_task(export_pk: int) -> None:
    """An export queued from the version page: load by id, call the service (which records the outcome)."""
    from models_registry.models import ModelExport
    from models_registry.services import model_version_export_run

    export = ModelExport.objects.filter(pk=export_pk).first()
    if export is not None:
        model_version_export_run(export=export)
