"""Soak on the embedded default, as `make run` starts it (`t4dm_up`: daphne + one supervised worker on the
filesystem broker): waves of work over about ten minutes (eight of feeding, then draining) — tiny training jobs, evaluations, dataset uploads
and validations, and every event delivered to five webhook subscriptions on a local receiver (a few
hundred broker messages in all) — with the worker killed (-9) mid-way while it trains.

It ends with every task done exactly once: each job succeeded (the killed one requeued once and resumed),
each evaluation succeeded, each webhook delivery row succeeded after one attempt and reached the receiver
exactly once (by its X-T4DM-Delivery id), no message left in the broker (none unreadable), t4dm_up
restarted the worker and the web server answered throughout. Waves: T4DM_SOAK_WAVES (default 16) of T4DM_SOAK_WAVE_SECONDS (default 30)."""

from __future__ import annotations

import json
import os
import time
from collections import Counter

import pytest

from tests.conftest import DEMO_ROWS
from tests.integrations.receiver import Receiver
from tests.reliability.embedded_up import up_platform  # noqa: F401 - fixture

pytestmark = [pytest.mark.e2e, pytest.mark.faults]

WAVES = int(os.environ.get("T4DM_SOAK_WAVES", "16"))
WAVE_SECONDS = float(os.environ.get("T4DM_SOAK_WAVE_SECONDS", "30"))
JOBS_PER_WAVE = 1
EVALUATIONS_PER_WAVE = 4
SUBSCRIPTIONS = 5
KILL_IN_WAVE = WAVES // 2


def _rows(tag: str) -> bytes:
    """The demo chat rows plus one row of its own, so that each upload is a new dataset."""
    extra = {
        "messages": [{"role": "user", "content": f"What is {tag}?"}, {"role": "assistant", "content": tag}]
    }
    return DEMO_ROWS.read_bytes().rstrip(b"\n") + b"\n" + json.dumps(extra).encode() + b"\n"


def _wait(what: str, check, *, timeout: float, every: float = 0.5):
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(every)


def test_soak_every_task_done_exactly_once_and_a_killed_worker_restarted(up_platform):  # noqa: F811
    platform = up_platform
    receiver = Receiver().start()
    began = time.monotonic()
    try:
        platform.start_up()
        with platform.client() as http:
            for _ in range(SUBSCRIPTIONS):
                created = http.post("/webhooks", json={"url": receiver.url, "event_types": ["*"]})
                assert created.status_code == 201, created.text

        # A first job, trained to the end: the model the evaluations use (and the worker warmed up).
        base_dataset = platform.upload("base.jsonl", _rows("base"))
        base_job = platform.start_job(base_dataset, max_steps=5)
        jobs, evaluations, uploads, killed_job = [base_job], [], 1, None
        platform.wait_for(base_job, lambda r: r["status"] == "succeeded", timeout=300, what="the first job")

        for wave in range(WAVES):
            wave_began = time.monotonic()
            with platform.client() as http:
                dataset = platform.upload(f"wave{wave}.jsonl", _rows(f"wave {wave}"))
                uploads += 1
                checked = http.post(
                    "/datasets/validate",
                    files={"file": ("check.jsonl", _rows(f"check {wave}"))},
                    data={"task_type": "chat"},
                )
                assert checked.status_code == 200, checked.text
                for _ in range(JOBS_PER_WAVE):
                    jobs.append(platform.start_job(dataset, max_steps=10))
                for _ in range(EVALUATIONS_PER_WAVE):
                    created = http.post(
                        "/evaluations",
                        json={
                            "job_id": base_job,
                            "metrics": ["perplexity"],
                            "max_samples": 4,
                            "compare_to_base": False,
                        },
                    )
                    assert created.status_code == 202, created.text
                    evaluations.append(created.json()["evaluation_id"])
            if wave == KILL_IN_WAVE:
                # While it trains one of this wave's jobs: no webhook or evaluation is in flight then.
                killed_job = _wait(
                    "a running job",
                    lambda: next(
                        (j for j in jobs[-JOBS_PER_WAVE:] if platform.job_row(j)["status"] == "running"), None
                    ),
                    timeout=240,
                    every=0.05,
                )
                pid = platform.kill_up_worker()
                platform.worker_pid(other_than=pid, timeout=60)
            assert platform.serving(), f"wave {wave}: the web server does not answer"
            time.sleep(max(0.0, WAVE_SECONDS - (time.monotonic() - wave_began)))

        # Everything finishes.
        for job in jobs:
            platform.wait_for(
                job,
                lambda r: r["status"] in ("succeeded", "failed", "cancelled"),
                timeout=300,
                what="the end",
            )
        _wait(
            "the evaluations",
            lambda: (
                platform.query(
                    "SELECT count(*) FROM experiments_evaluation WHERE status IN ('queued', 'running')"
                )
                == [(0,)]
            ),
            timeout=300,
        )
        _wait(
            "the webhook deliveries",
            lambda: (
                platform.query("SELECT count(*) FROM integrations_webhookdelivery WHERE status = 'pending'")
                == [(0,)]
            ),
            timeout=300,
        )
        time.sleep(2)  # nothing more may arrive (a duplicate would)

        # Every job once: succeeded, one job.succeeded event each; only the killed one was requeued.
        rows = {job: platform.job_row(job) for job in jobs}
        assert {job: row["status"] for job, row in rows.items() if row["status"] != "succeeded"} == {}, rows
        assert {job for job, row in rows.items() if row["lost_count"]} == {killed_job}, rows
        assert rows[killed_job]["lost_count"] == 1
        # Every evaluation once.
        statuses = platform.query("SELECT status, count(*) FROM experiments_evaluation GROUP BY status")
        assert statuses == [("succeeded", len(evaluations))], statuses
        # Every webhook delivery row succeeded at its first attempt and reached the receiver exactly once.
        deliveries = platform.query(
            "SELECT delivery_id, event_type, status, attempts FROM integrations_webhookdelivery"
        )
        assert {(status, attempts) for _, _, status, attempts in deliveries} == {("succeeded", 1)}
        by_type = Counter(event for _, event, _, _ in deliveries)
        assert by_type["job.succeeded"] == len(jobs) * SUBSCRIPTIONS, by_type
        assert by_type["evaluation.completed"] == len(evaluations) * SUBSCRIPTIONS, by_type
        received = Counter(r.headers["X-T4DM-Delivery"] for r in receiver.requests)
        assert [d for d, n in received.items() if n > 1] == [], "delivered twice"
        assert set(received) == {str(_uuid(d)) for d, *_ in deliveries}
        tasks = len(deliveries) + len(jobs) + len(evaluations)
        assert tasks >= 250, f"only {tasks} tasks"
        # Every upload stored.
        assert platform.query("SELECT count(*) FROM datasets_app_dataset") == [(uploads,)]

        # The broker holds nothing any more: every message was acknowledged, none was unreadable.
        broker = platform.data / "broker"
        assert list((broker / "queue").glob("*.msg")) == []
        assert list((broker / "claims").rglob("*.msg")) == []
        assert not (broker / "bad").exists() or list((broker / "bad").iterdir()) == []

        # The platform is up; t4dm_up restarted the worker once and never stopped.
        assert platform.serving() and platform.web.poll() is None
        log = platform.log_text()
        assert log.count("restarting it in") == 1 and "stopped because" not in log, log
        assert "Unrecoverable error" not in log
        print(
            f"soak: {WAVES} waves, {len(jobs)} jobs, {len(evaluations)} evaluations, {len(deliveries)} webhook "
            f"deliveries ({dict(by_type)}), {uploads} uploads; {time.monotonic() - began:.0f} s",
            flush=True,
        )
    finally:
        receiver.stop()


def _uuid(value) -> str:
    """SQLite stores Django's UUIDField as 32 hex digits; the header carries the dashed form."""
    import uuid

    return str(uuid.UUID(str(value)))
