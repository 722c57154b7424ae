"""Webhooks delivered by the real embedded worker (its datasets queue) to a real local receiver: a job's
events arrive signed, a 5xx is retried through the broker, each delivery is logged."""

from __future__ import annotations

import time

import pytest

from experiments.integrations.signing import verify
from tests.conftest import DEMO_ROWS

pytestmark = pytest.mark.e2e


def test_a_jobs_events_reach_the_receiver_through_the_worker(embedded_platform, receiver):
    receiver.statuses = [503, 200]  # the first delivery fails once, and is retried after the backoff
    with embedded_platform.http() as http:
        subscription = http.post(
            "/webhooks", json={"url": receiver.url, "event_types": ["job.*", "model_version.created"]}
        )
        assert subscription.status_code == 201, subscription.text
        subscription = subscription.json()
        dataset = http.post(
            "/datasets", files={"file": ("kb.jsonl", DEMO_ROWS.read_bytes())}, data={"task_type": "chat"}
        )
        config = http.post(
            "/configs",
            json={
                "model_base": "t4dm-tiny",
                "dataset_id": dataset.json()["dataset_id"],
                "hyperparams": {"learning_rate": 3e-3, "max_steps": 3, "batch_size": 4},
            },
        )
        assert config.status_code == 201, config.text
        job_id = http.post("/jobs", json={"config_id": config.json()["config_id"]}).json()["job_id"]

        wanted = ["job.queued", "job.running", "job.succeeded", "model_version.created"]
        deadline = time.monotonic() + 120
        log: list[dict] = []
        while time.monotonic() < deadline:
            log = http.get(f"/webhooks/{subscription['id']}/deliveries").json()
            if sorted(d["event_type"] for d in log if d["status"] == "succeeded") == sorted(wanted):
                break
            time.sleep(0.5)

    by_type = {d["event_type"]: d for d in log}
    assert sorted(by_type) == sorted(wanted), log
    assert all(d["status"] == "succeeded" for d in log), log
    assert sum(d["attempts"] for d in log) == len(wanted) + 1  # one retry after the 503
    received = [r for r in receiver.requests]
    assert len(received) == len(wanted) + 1
    for request in received:
        assert verify(subscription["secret"], request.body, request.headers["X-T4DM-Signature"])
    accepted = {r.headers["X-T4DM-Event"]: r.json() for r in received[1:]}
    assert accepted["job.succeeded"]["data"]["job"]["job_id"] == job_id
    assert {r.headers["X-T4DM-Delivery"] for r in received[1:]} == {d["delivery_id"] for d in log}
