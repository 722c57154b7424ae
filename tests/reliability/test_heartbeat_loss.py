"""A worker that stops heartbeating (SIGSTOP: alive but frozen, as on a hung GPU driver or a swapped-out
box) is found lost within T4DM_HEARTBEAT_TIMEOUT and its job is requeued or failed by
T4DM_LOST_JOB_POLICY — never left "running"."""

from __future__ import annotations

import signal
import time

import pytest

from tests.e2e.test_training_live import HYPERPARAMS, start_job
from tests.reliability.conftest import HEARTBEAT_TIMEOUT

pytestmark = [pytest.mark.e2e, pytest.mark.faults]

MAX_STEPS = 40
# The reaper looks every 0.5 s; heartbeats come every 0.5 s; a loaded 2-core CI box adds a little.
DETECTION_SLACK = 3.0


@pytest.mark.parametrize("policy", ["requeue", "fail"])
def test_a_frozen_worker_is_found_lost_and_its_job_requeued_or_failed(
    fault_platform, policy, record_property
):
    platform = fault_platform
    platform.env["T4DM_LOST_JOB_POLICY"] = policy
    platform.start_web()
    platform.start_worker()
    job_id = start_job(
        platform,
        hyperparams={**HYPERPARAMS, "max_steps": MAX_STEPS, "batch_size": 4},
        checkpointing={"save_steps": 5, "save_total_limit": 2},
    )
    platform.wait_for(
        job_id, lambda r: r["status"] == "running" and r["step"] >= 8, timeout=180, what="step 8"
    )
    platform.signal_worker(signal.SIGSTOP)
    stopped = time.monotonic()
    row = platform.wait_for(
        job_id, lambda r: r["status"] != "running", timeout=HEARTBEAT_TIMEOUT + 30, what="the lost verdict"
    )
    detected = time.monotonic() - stopped
    record_property("detection_seconds", round(detected, 1))
    print(f"\n{policy}: frozen worker found lost after {detected:.1f} s (timeout {HEARTBEAT_TIMEOUT} s)")
    assert HEARTBEAT_TIMEOUT - 1 <= detected <= HEARTBEAT_TIMEOUT + DETECTION_SLACK
    with platform.http() as http:
        [worker] = http.get("/workers").json()
    assert worker["status"] == "lost"

    # The frozen process wakes up: its late reports are refused with 409 (its attempt was superseded by
    # the requeue, or the job is finished), so it drops that run without writing anything more.
    platform.signal_worker(signal.SIGCONT)
    if policy == "fail":
        assert row["status"] == "failed" and row["lost_count"] == 0
        assert row["error"].startswith("lost: fault-gpu0@") and "sent no heartbeat for" in row["error"]
        time.sleep(3)
        assert platform.job_row(job_id)["status"] == "failed"
        return

    assert row["status"] in ("queued", "running") and row["lost_count"] == 1
    # The same (woken) worker takes the requeued message and resumes from the last checkpoint.
    final = platform.wait_for(
        job_id, lambda r: r["status"] in ("succeeded", "failed"), timeout=240, what="the end"
    )
    assert final["status"] == "succeeded", final
    with platform.http() as http:
        series = http.get(f"/jobs/{job_id}/metrics").json()["series"]
    assert [row[0] for row in series["loss"]] == list(range(1, MAX_STEPS + 1))
    events = platform.events(job_id)
    assert any(e.startswith("lost: fault-gpu0@") and "sent no heartbeat for" in e for e in events), events
    # It resumes from its newest checkpoint on disk within the steps whose metrics are stored. The woken
    # worker's attempt is fenced (its reports get 409 attempt_superseded, it checks before every write):
    # it saves and rotates nothing more, so the checkpoint it reported before it froze is still there.
    assert any(
        "resumed the job (interrupted at step" in e and "from its checkpoint at step" in e for e in events
    ), events
    assert any("attempt 2" in e for e in events), events
