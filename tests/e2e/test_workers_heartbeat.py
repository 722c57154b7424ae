"""A real worker process registers itself through its heartbeat and shows which job it runs."""

from __future__ import annotations

import time

import pytest

from tests.e2e.test_training_live import HYPERPARAMS, start_job

pytestmark = pytest.mark.e2e


def _workers(platform) -> list[dict]:
    with platform.http() as http:
        return http.get("/workers").json()


def _training_workers(platform) -> list[dict]:
    return [w for w in _workers(platform) if "training" in w["queue"].split(",")]


@pytest.mark.parametrize("platform_name", ["embedded_platform", "production_platform"])
def test_worker_heartbeats_and_reports_its_job(request, platform_name):
    platform = request.getfixturevalue(platform_name)
    # A worker marked lost earlier (e.g. its heartbeats stalled on a loaded machine) is alive again
    # with its next heartbeat.
    # (Production also runs a platform worker, on the datasets queue: only the training one is meant.)
    deadline = time.monotonic() + 60
    workers = _training_workers(platform)
    while not (workers and workers[0]["status"] in ("idle", "busy")) and time.monotonic() < deadline:
        time.sleep(0.5)
        workers = _training_workers(platform)
    [worker] = workers
    assert worker["status"] in ("idle", "busy")

    # Long enough to be seen running whatever the machine's load; cancelled at the end.
    job_id = start_job(platform, hyperparams={**HYPERPARAMS, "epochs": 400})
    seen = None
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        seen = _training_workers(platform)[0]
        if seen["current_job_id"] == job_id:
            break
        time.sleep(0.3)
    assert seen["current_job_id"] == job_id and seen["status"] == "busy"
    with platform.http() as http:
        http.post(f"/jobs/{job_id}/cancel")
