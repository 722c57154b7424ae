"""Registry tasks. Serving: one completion request on a serving worker (models_registry/serving/)."""

from __future__ import annotations

from celery import shared_task


# Acknowledged on receipt, not late: a redelivered request would generate for a client that already
# got part of its answer (or gave up); the client retries instead.
@shared_task(name="serving.generate", acks_late=False, ignore_result=True)
def serving_generate(spec: dict, reply: str) -> str:
    from models_registry.serving.worker import serve

    return serve(spec, reply)
