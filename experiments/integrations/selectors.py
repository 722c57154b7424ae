"""Reads for integrations: the knowledge-store metadata of a model version, subscriptions, deliveries."""

from __future__ import annotations

from typing import Any

from django.db.models import Max, Min

from experiments.integrations.models import WebhookDelivery, WebhookSubscription
from t4dm_site.errors import NotFound
from t4dm_site.public_ids import parse_public_id


def webhook_subscriptions() -> list[WebhookSubscription]:
    return list(WebhookSubscription.objects.all())


def webhook_subscription_get(*, subscription_id: str) -> WebhookSubscription:
    found = WebhookSubscription.objects.filter(pk=parse_public_id("wh", subscription_id)).first()
    if found is None:
        raise NotFound(f"webhook subscription {subscription_id} does not exist")
    return found


def webhook_deliveries(*, subscription: WebhookSubscription, limit: int = 100) -> list[WebhookDelivery]:
    return list(subscription.deliveries.order_by("-pk")[:limit])


def subscription_to_dict(subscription: WebhookSubscription, *, with_secret: bool = False) -> dict[str, Any]:
    data = {
        "id": subscription.public_id,
        "url": subscription.url,
        "event_types": subscription.event_types,
        "active": subscription.active,
        "description": subscription.description,
        "created_at": subscription.created_at.isoformat(),
        # The secret is shown once, when the subscription is created (or its secret replaced).
        "secret": subscription.secret if with_secret else None,
    }
    return data


def delivery_to_dict(delivery: WebhookDelivery) -> dict[str, Any]:
    return {
        "id": delivery.public_id,
        "delivery_id": str(delivery.delivery_id),
        "event_id": str(delivery.event_id),
        "event_type": delivery.event_type,
        "status": delivery.status,
        "attempts": delivery.attempts,
        "last_status_code": delivery.last_status_code,
        "last_error": delivery.last_error or None,
        "payload": delivery.payload,
        "created_at": delivery.created_at.isoformat(),
        "last_attempt_at": delivery.last_attempt_at.isoformat() if delivery.last_attempt_at else None,
        "delivered_at": delivery.delivered_at.isoformat() if delivery.delivered_at else None,
    }


def _training_metrics(job) -> dict[str, Any]:
    """Final, min and max of each metric series the job reported, plus the latest values."""
    if job is None:
        return {}
    series: dict[str, Any] = {}
    rows = job.metric_points.values("key").annotate(min=Min("value"), max=Max("value"), last_step=Max("step"))
    for row in rows:
        final = (
            job.metric_points.filter(key=row["key"], step=row["last_step"])
            .values_list("value", flat=True)
            .first()
        )
        series[row["key"]] = {
            "final": final,
            "min": row["min"],
            "max": row["max"],
            "last_step": row["last_step"],
        }
    return {
        "status": job.status,
        "steps": job.step,
        "total_steps": job.total_steps,
        "epochs": job.epoch,
        "latest": job.latest_metrics or {},
        "series": series,
        "started_at": job.started_at.isoformat() if job.started_at else None,
        "finished_at": job.finished_at.isoformat() if job.finished_at else None,
    }


def model_version_metadata(version) -> dict[str, Any]:
    """One document per model version for a knowledge store (the seed's knowledge integration point)."""
    from models_registry.selectors import model_version_schema, version_evaluation

    dv, config, job = version.dataset_version, version.config, version.job
    evaluation = version_evaluation(version)
    checkpoints = list(job.checkpoints.order_by("step")) if job else []
    return {
        **model_version_schema(version),
        "ref": version.ref,
        "stage": version.stage,
        "provider": version.provider,
        "version_reason": version.version_reason,
        "approach": config.approach if config else None,
        "task_type": config.task_type if config else (dv.task_type if dv else None),
        "dataset": {
            "dataset_id": dv.dataset.public_id,
            "name": dv.dataset.name,
            "version": dv.number,
            "content_hash": dv.content_hash,
            "format": dv.format,
            "task_type": dv.task_type,
            "splits": dv.splits,
            "statistics": dv.statistics,
            "validation_status": dv.validation_status,
            "path": dv.path,
        }
        if dv
        else None,
        "config": {
            "config_id": config.public_id,
            "model_base": config.model_base,
            "approach": config.approach,
            "template": config.template or None,
            "hyperparameters": config.hyperparameters,
            "early_stopping": config.early_stopping,
            "checkpointing": config.checkpointing,
            "estimate": config.estimate,
        }
        if config
        else None,
        "job_id": job.public_id if job else None,
        "training_metrics": _training_metrics(job),
        "evaluation_results": {
            "evaluation_id": evaluation.public_id,
            "status": evaluation.status,
            "metrics": evaluation.metrics,
            "base_model": evaluation.base_model or None,
            "base_metrics": evaluation.base_metrics,
            "comparison_to_base": evaluation.comparison_to_base,
            "thresholds": evaluation.threshold_results,
            "sample_outputs": evaluation.sample_outputs,
            "validator": (evaluation.details or {}).get("validator"),
        }
        if evaluation
        else None,
        "artifacts": {
            "model": version.artifact_path or None,
            "output_dir": job.output_dir if job else None,
            "best_checkpoint": version.checkpoint.path if version.checkpoint else None,
            "checkpoints": [{"step": c.step, "path": c.path, "is_best": c.is_best} for c in checkpoints],
            "exports": [
                {"export_id": e.pk, "merged": e.merged, "path": e.path} for e in version.exports.all()
            ],
        },
        "stage_history": [
            {
                "from": t.from_stage,
                "to": t.to_stage,
                "by": t.actor_name,
                "reason": t.reason,
                "at": t.created_at.isoformat(),
            }
            for t in version.transitions.order_by("pk")
        ],
    }
