"""/settings/webhooks/: admins add, pause and resume subscriptions in the browser; others get 403."""

from __future__ import annotations

import pytest

from experiments.integrations.models import WebhookSubscription

pytestmark = pytest.mark.django_db


@pytest.fixture
def admin(client, make_user):
    user = make_user("ada", role="admin")
    client.force_login(user)
    return user


def test_a_researcher_is_refused(client, researcher):
    client.force_login(researcher)
    response = client.get("/settings/webhooks/")
    assert response.status_code == 403
    assert "Webhooks are managed by admins" in response.content.decode()
    assert (
        client.post("/settings/webhooks/", {"url": "https://x.example/", "event_types": ["*"]}).status_code
        == 403
    )
    assert not WebhookSubscription.objects.exists()


def test_an_admin_adds_a_subscription_and_sees_its_secret_once(client, admin):
    response = client.post("/settings/webhooks/", {
        "url": "https://hooks.example.org/t4dm", "event_types": ["job.succeeded", "job.failed"],
        "description": "CI bot",
    }, follow=True)  # fmt: skip
    subscription = WebhookSubscription.objects.get()
    page = response.content.decode()
    assert (subscription.url, subscription.event_types) == (
        "https://hooks.example.org/t4dm",
        ["job.succeeded", "job.failed"],
    )
    assert subscription.secret in page and subscription.created_by == admin
    assert subscription.secret not in client.get("/settings/webhooks/").content.decode()  # shown once


def test_an_unknown_event_is_refused_with_the_reason(client, admin):
    response = client.post("/settings/webhooks/", {"url": "https://h.example/", "event_types": []})
    assert response.status_code == 400 and "event_types" in response.content.decode()
    assert not WebhookSubscription.objects.exists()


def test_pause_and_resume(client, admin):
    from experiments.integrations.services import webhook_subscription_create

    subscription = webhook_subscription_create(owner=admin, url="https://h.example/", event_types=["*"])
    client.post(f"/settings/webhooks/{subscription.public_id}/toggle/")
    subscription.refresh_from_db()
    assert subscription.active is False
    client.post(f"/settings/webhooks/{subscription.public_id}/toggle/")
    subscription.refresh_from_db()
    assert subscription.active is True
