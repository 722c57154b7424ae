"""Integrations API: webhook subscriptions and their delivery log (/api/v1/webhooks), and the
effective finetune configuration (/api/v1/finetune-config). Thin: parse → service/selector → schema.

Webhook endpoints are for admins: a subscription receives every user's job, evaluation and version
events, so creating one is an operator's decision."""

from __future__ import annotations

from ninja import Router

from experiments.integrations import selectors, services
from experiments.integrations.schemas import (
    DeliveryOut,
    FinetuneConfigOut,
    SubscriptionIn,
    SubscriptionOut,
    SubscriptionPatch,
)
from t4dm_site import finetune_config
from t4dm_site.auth import UserAuth, any_user_auth
from t4dm_site.roles import ADMIN

router = Router(tags=["integrations"])
admin_auth = UserAuth(roles={ADMIN})


@router.get("/finetune-config", response=FinetuneConfigOut, auth=any_user_auth)
def finetune_config_get(request):
    """The effective finetune configuration (the seed's `finetune:` block) and where each value came from."""
    return finetune_config.effective().as_dict()


@router.get("/webhooks", response=list[SubscriptionOut], auth=admin_auth)
def webhook_list(request):
    return [selectors.subscription_to_dict(s) for s in selectors.webhook_subscriptions()]


@router.post("/webhooks", response={201: SubscriptionOut}, auth=admin_auth)
def webhook_create(request, payload: SubscriptionIn):
    """Subscribe a URL to event types (["*"] for all). The answer shows the signing secret, once."""
    subscription = services.webhook_subscription_create(owner=request.auth, **payload.dict())
    return 201, selectors.subscription_to_dict(subscription, with_secret=True)


@router.get("/webhooks/{subscription_id}", response=SubscriptionOut, auth=admin_auth)
def webhook_detail(request, subscription_id: str):
    return selectors.subscription_to_dict(selectors.webhook_subscription_get(subscription_id=subscription_id))


@router.patch("/webhooks/{subscription_id}", response=SubscriptionOut, auth=admin_auth)
def webhook_update(request, subscription_id: str, payload: SubscriptionPatch):
    subscription = services.webhook_subscription_update(
        subscription=selectors.webhook_subscription_get(subscription_id=subscription_id), **payload.dict()
    )
    return selectors.subscription_to_dict(subscription, with_secret=payload.secret is not None)


@router.delete("/webhooks/{subscription_id}", response={204: None}, auth=admin_auth)
def webhook_delete(request, subscription_id: str):
    selectors.webhook_subscription_get(subscription_id=subscription_id).delete()
    return 204, None


@router.get("/webhooks/{subscription_id}/deliveries", response=list[DeliveryOut], auth=admin_auth)
def webhook_deliveries(request, subscription_id: str, limit: int = 100):
    """The delivery log, newest first: status, attempts, last HTTP status or error."""
    subscription = selectors.webhook_subscription_get(subscription_id=subscription_id)
    return [
        selectors.delivery_to_dict(d)
        for d in selectors.webhook_deliveries(subscription=subscription, limit=min(max(limit, 1), 1000))
    ]
