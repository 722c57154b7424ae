"""Dashboard page: the effective finetune configuration and where each value came from; the webhook
subscriptions and their recent deliveries for admins (read-only here; manage them in the admin or the
API)."""

from __future__ import annotations

from django.conf import settings
from django.shortcuts import render

from experiments.integrations.models import WebhookDelivery, WebhookSubscription
from t4dm_site import finetune_config
from t4dm_site.pages import dashboard
from t4dm_site.roles import is_admin


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
    admin = is_admin(request.user)

    return render(
        request,
        "integrations/finetune_config.html",
        {
            "config": config,
            "rows": _rows(config.values, config.sources),
            "env_var": finetune_config.ENV_VAR,
            # Subscriptions are an admin's: they receive every user's events, so only admins see
            # where they point and what the receivers answered; others see how many are active.
            "is_admin": admin,
            "active_subscriptions": WebhookSubscription.objects.filter(active=True).count(),
            "subscriptions": WebhookSubscription.objects.all() if admin else [],
            "deliveries": WebhookDelivery.objects.select_related("subscription")[:20] if admin else [],
            "validator_hook": settings.VALIDATOR_HOOK,
            "validator_url": settings.VALIDATOR_URL if admin else "",
            "validator_url_set": bool(settings.VALIDATOR_URL),
        },
    )
