"""Item 12 on the real processes: a job trained by the embedded platform's Celery worker; the log of
`t4dm_up` (ASGI server and worker together) holds neither the user's API token nor the job's worker
token (whose value the server never shows; any `t4job_<pk>_<secret>` in the log is a leak)."""

from __future__ import annotations

import re
import time
from pathlib import Path

import pytest

from tests.e2e.test_training_live import start_job

pytestmark = pytest.mark.e2e

WORKER_TOKEN = re.compile(r"t4job_\d+_[A-Za-z0-9_-]{8,}")
API_TOKEN = re.compile(r"t4dm_[A-Za-z0-9_-]{20,}")


def test_the_server_and_worker_logs_hold_no_token(embedded_platform):
    job_id = start_job(
        embedded_platform, hyperparams={"learning_rate": 3e-3, "epochs": 1, "batch_size": 8, "max_steps": 4}
    )
    deadline = time.monotonic() + 180
    with embedded_platform.http() as http:
        while time.monotonic() < deadline:
            status = http.get(f"/jobs/{job_id}").json()["status"]
            if status in ("succeeded", "failed", "cancelled"):
                break
            time.sleep(1)
        # Bad tokens are logged as refused requests, never with the value that was tried.
        http.get("/jobs", headers={"Authorization": "Bearer t4dm_" + "w" * 40})
    assert status == "succeeded"
    log = (Path(embedded_platform.env["T4DM_DATA_DIR"]) / "t4dm_up.log").read_text()
    assert job_id in log or "training" in log  # the log is the one that saw the job
    assert embedded_platform.token not in log
    assert not WORKER_TOKEN.findall(log), WORKER_TOKEN.findall(log)[:3]
    assert not API_TOKEN.findall(log), API_TOKEN.findall(log)[:3]
