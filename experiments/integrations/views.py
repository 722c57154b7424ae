"""Dashboard page: the effective finetune configuration and where each value came from; the webhook
subscriptions and their recent deliveries (read-only here; manage them in the admin or the API)."""

from __future__ import annotations

from django.shortcuts import render

from experiments.integrations.models import WebhookDelivery, WebhookSubscription
from experiments.views import dashboard
from t4dm_site import finetune_config


def _rows(values: dict, sources: dict, prefix: str = "") -> list[dict]:
    rows = []
    for key, value in values.items():
        dotted = f"{prefix}{key}"
        if isinstance(value, dict):
            rows.extend(_rows(value, sources, dotted + "."))
        else:
            rows.append({"key": f"finetune.{dotted}", "value": value, "source": sources.get(dotted, "")})
    return rows


@dashboard
def finetune_settings(request):
    config = finetune_config.effective()
    from django.conf import settings

    return render(
        request,
        "integrations/finetune_config.html",
        {
            "config": config,
            "rows": _rows(config.values, config.sources),
            "env_var": finetune_config.ENV_VAR,
            "subscriptions": WebhookSubscription.objects.all(),
            "deliveries": WebhookDelivery.objects.select_related("subscription")[:20],
            "validator_hook": settings.VALIDATOR_HOOK,
            "validator_url": settings.VALIDATOR_URL,
        },
    )
