"""Signed webhooks against a real local HTTP receiver. Delivery tasks run in-process with Celery's
``apply()`` (retries run eagerly, without the countdown); test_webhooks_live.py runs them on the real
embedded worker."""

from __future__ import annotations

import json

import pytest

from experiments.integrations.events import emit
from experiments.integrations.models import WebhookDelivery
from experiments.integrations.signing import verify
from experiments.integrations.tasks import deliver_webhook
from experiments.services import job_start


@pytest.fixture(autouse=True)
def _fast_retries(settings):
    settings.WEBHOOK_MAX_RETRIES = 3
    settings.WEBHOOK_RETRY_BACKOFF_SECONDS = 0
    settings.WEBHOOK_TIMEOUT_SECONDS = 5


def _subscribe(client, admin, url: str, event_types=("*",), **extra) -> dict:
    response = client.post(
        "/api/v1/webhooks",
        {"url": url, "event_types": list(event_types), **extra},
        content_type="application/json",
        headers={"Authorization": f"Bearer {admin.raw_token}"},
    )
    assert response.status_code == 201, response.content
    return response.json()


def _deliveries(client, admin, subscription_id: str) -> list[dict]:
    response = client.get(
        f"/api/v1/webhooks/{subscription_id}/deliveries",
        headers={"Authorization": f"Bearer {admin.raw_token}"},
    )
    assert response.status_code == 200, response.content
    return response.json()


def test_a_job_event_is_signed_retried_on_5xx_and_delivered_once(
    client, admin, receiver, demo_config, django_capture_on_commit_callbacks
):
    # given: a subscription to job events, and a receiver that fails twice with 5xx, then accepts
    subscription = _subscribe(client, admin, receiver.url, ["job.*"])
    receiver.statuses = [500, 503, 200]

    # when: a job is queued (the event is recorded in the transaction, sent after commit)
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        job = job_start(owner=demo_config.owner, config=demo_config)
    assert any(cb.__qualname__.startswith("emit") for cb in callbacks)
    delivery = WebhookDelivery.objects.get()
    assert delivery.status == "pending" and delivery.event_type == "job.queued"
    deliver_webhook.apply(args=[delivery.pk])

    # then: three attempts, the last accepted; every attempt carries the same signed body
    assert len(receiver.requests) == 3
    bodies = {r.body for r in receiver.requests}
    assert len(bodies) == 1
    for request in receiver.requests:
        assert verify(subscription["secret"], request.body, request.headers["X-T4DM-Signature"])
        assert not verify("another-secret-entirely", request.body, request.headers["X-T4DM-Signature"])
        assert request.headers["X-T4DM-Event"] == "job.queued"
        assert request.headers["X-T4DM-Delivery"] == str(delivery.delivery_id)
    event = receiver.requests[-1].json()
    assert event["type"] == "job.queued" and event["data"]["job"]["job_id"] == job.public_id

    log = _deliveries(client, admin, subscription["id"])
    assert len(log) == 1
    assert log[0]["status"] == "succeeded" and log[0]["attempts"] == 3 and log[0]["last_status_code"] == 200
    assert log[0]["delivered_at"] and log[0]["last_error"] is None

    # when: the task is delivered again (a broker redelivery) → nothing is sent twice
    deliver_webhook.apply(args=[delivery.pk])
    assert len(receiver.requests) == 3
    assert WebhookDelivery.objects.get().attempts == 3


def test_a_4xx_fails_at_once_and_an_unreachable_receiver_fails_after_the_retries(
    client, admin, receiver, django_capture_on_commit_callbacks
):
    bad_request = _subscribe(client, admin, receiver.url, ["evaluation.completed"])
    unreachable = _subscribe(client, admin, "http://127.0.0.1:9/nowhere", ["evaluation.completed"])
    receiver.statuses = [400]
    with django_capture_on_commit_callbacks(execute=False):
        emit("evaluation.completed", {"evaluation": {"evaluation_id": "eval-001"}})
        emit("job.failed", {"job": {"job_id": "job-001"}})  # nobody subscribed: no delivery

    for delivery in WebhookDelivery.objects.all():
        deliver_webhook.apply(args=[delivery.pk])

    [rejected] = _deliveries(client, admin, bad_request["id"])
    assert (
        rejected["status"] == "failed" and rejected["attempts"] == 1 and rejected["last_status_code"] == 400
    )
    assert "HTTP 400" in rejected["last_error"]
    [lost] = _deliveries(client, admin, unreachable["id"])
    assert lost["status"] == "failed" and lost["attempts"] == 4  # 1 + WEBHOOK_MAX_RETRIES
    assert lost["last_status_code"] is None and "ConnectError" in lost["last_error"]
    assert WebhookDelivery.objects.count() == 2


def test_the_subscription_api_checks_input_and_roles(client, admin, researcher):
    headers = {"Authorization": f"Bearer {admin.raw_token}"}
    for payload, needle in (
        ({"url": "ftp://example.org/x"}, "http:// or https://"),
        ({"url": "http://example.org/x", "event_types": ["job.exploded"]}, "unknown event type"),
        ({"url": "http://example.org/x", "secret": "short"}, "at least 16"),
    ):
        response = client.post("/api/v1/webhooks", payload, content_type="application/json", headers=headers)
        assert response.status_code == 400 and needle in response.json()["error"]["message"]

    created = _subscribe(client, admin, "http://example.org/hook", ["job.*", "model_version.created"])
    assert len(created["secret"]) >= 32
    listed = client.get("/api/v1/webhooks", headers=headers).json()
    assert [s["id"] for s in listed] == [created["id"]] and listed[0]["secret"] is None
    patched = client.patch(
        f"/api/v1/webhooks/{created['id']}",
        json.dumps({"active": False}),
        content_type="application/json",
        headers=headers,
    ).json()
    assert patched["active"] is False
    # Researchers cannot read or add subscriptions: they carry every user's events.
    response = client.get("/api/v1/webhooks", headers={"Authorization": f"Bearer {researcher.raw_token}"})
    assert response.status_code == 403
    assert client.delete(f"/api/v1/webhooks/{created['id']}", headers=headers).status_code == 204
    assert client.get(f"/api/v1/webhooks/{created['id']}", headers=headers).status_code == 404


def test_the_delivery_log_is_in_the_admin(
    client, admin, django_user_model, django_capture_on_commit_callbacks
):
    subscription = _subscribe(client, admin, "http://example.org/hook", ["job.*"])
    with django_capture_on_commit_callbacks(execute=False):
        emit("job.succeeded", {"job": {"job_id": "job-042"}})
    client.force_login(
        django_user_model.objects.create_superuser("root", "root@example.org", "pw-root-12345")
    )

    deliveries = client.get("/admin/integrations/webhookdelivery/")
    assert deliveries.status_code == 200 and "job.succeeded" in deliveries.content.decode()
    delivery = WebhookDelivery.objects.get()
    detail = client.get(f"/admin/integrations/webhookdelivery/{delivery.pk}/change/").content.decode()
    assert "job-042" in detail and str(delivery.delivery_id) in detail
    page = client.get(f"/admin/integrations/webhooksubscription/{int(subscription['id'][3:])}/change/")
    assert page.status_code == 200 and "job.succeeded" in page.content.decode()
