"""Dashboard page: the effective finetune configuration and where each value came from; the webhook
subscriptions and their recent deliveries for admins; the webhooks page (/settings/webhooks/) where
admins add, pause and resume subscriptions."""

from __future__ import annotations

from django.conf import settings
from django.contrib import messages
from django.core.exceptions import PermissionDenied
from django.http import Http404
from django.shortcuts import get_object_or_404, redirect, render

from experiments.integrations import services
from experiments.integrations.models import ALL_EVENTS, WebhookDelivery, WebhookSubscription
from t4dm_site import finetune_config
from t4dm_site.errors import DomainError, NotFound
from t4dm_site.pages import dashboard
from t4dm_site.public_ids import parse_public_id
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


def _admin_only(request) -> None:
    if not is_admin(request.user):
        # Subscriptions receive every user's events: only admins see or change where they point.
        raise PermissionDenied("Webhooks are managed by admins: they receive every user's events.")


@dashboard
def webhooks(request):
    """Admins: add a subscription (its secret shown once), pause or resume one, read recent deliveries."""
    _admin_only(request)
    post = request.POST
    error = ""
    if request.method == "POST":
        try:
            subscription = services.webhook_subscription_create(
                owner=request.user,
                url=post.get("url", "").strip(),
                event_types=post.getlist("event_types"),
                secret=post.get("secret") or None,
                description=post.get("description", "").strip()[:200],
            )
        except DomainError as exc:
            error = exc.message
        else:
            messages.success(
                request,
                f"{subscription.public_id} added. Its signing secret (shown once; the receiver checks the "
                f"X-T4DM-Signature header with it): {subscription.secret}",
            )
            return redirect("webhooks")
    return render(
        request,
        "integrations/webhooks.html",
        {
            "error": error,
            "form": post,
            "chosen": set(post.getlist("event_types")),
            "event_types": [ALL_EVENTS, *services.EVENT_TYPES],
            "subscriptions": WebhookSubscription.objects.order_by("-created_at"),
            "deliveries": WebhookDelivery.objects.select_related("subscription")[:50],
        },
        status=400 if error else 200,
    )


@dashboard
def webhook_toggle(request, subscription_id: str):
    _admin_only(request)
    if request.method != "POST":
        return redirect("webhooks")
    try:
        pk = parse_public_id(WebhookSubscription.PUBLIC_ID_PREFIX, subscription_id)
    except NotFound as exc:
        raise Http404(exc.message) from None
    subscription = get_object_or_404(WebhookSubscription, pk=pk)
    services.webhook_subscription_update(subscription=subscription, active=not subscription.active)
    messages.success(request, f"{subscription.public_id} {'resumed' if subscription.active else 'paused'}.")
    return redirect("webhooks")
