"""kill -9 the Celery worker mid-training, 10 times at random (seeded) steps: each time the job is
requeued (the restarted worker's first heartbeat says it no longer runs it), resumes from its last
checkpoint on the new worker process, and in the end finishes with every step of its metric series
recorded exactly once; the job history shows each interruption."""

from __future__ import annotations

import random
import time

import pytest

from tests.e2e.test_training_live import HYPERPARAMS, start_job

pytestmark = [pytest.mark.e2e, pytest.mark.faults]

KILLS = 10
MAX_STEPS = 100
SAVE_STEPS = 5


def test_a_job_killed_ten_times_resumes_each_time_and_loses_no_step(fault_platform, record_property):
    platform = fault_platform
    platform.start_web()
    platform.start_worker()
    job_id = start_job(
        platform,
        hyperparams={**HYPERPARAMS, "max_steps": MAX_STEPS, "batch_size": 4},
        checkpointing={"save_steps": SAVE_STEPS, "save_total_limit": 2},
    )
    began = time.monotonic()
    rng = random.Random(20261127)
    targets = sorted(rng.sample(range(4, MAX_STEPS - 15), KILLS))
    killed_at: list[int] = []
    requeue_s: list[float] = []
    for i, target in enumerate(targets):
        # A step this run reached: past the previous kill, so it is the resumed run that reports it.
        target = max(target, (killed_at[-1] + 2) if killed_at else 0)
        row = platform.wait_for(
            job_id,
            lambda r, i=i, target=target: (
                r["lost_count"] == i and r["status"] == "running" and r["step"] >= target
            ),
            timeout=180,
            what=f"kill {i + 1}: step {target}",
        )
        platform.kill_worker()
        killed = time.monotonic()
        killed_at.append(row["step"])
        platform.start_worker()  # a supervisor (systemd, k8s) restarts it; same name, new process
        platform.wait_for(job_id, lambda r, i=i: r["lost_count"] == i + 1, timeout=120, what="the requeue")
        requeue_s.append(time.monotonic() - killed)
        print(
            f"kill {i + 1} at step {row['step']} ({time.monotonic() - began:.0f} s in): requeued after "
            f"{requeue_s[-1]:.1f} s",
            flush=True,
        )
    final = platform.wait_for(
        job_id, lambda r: r["status"] in ("succeeded", "failed"), timeout=300, what="the end"
    )
    assert final["status"] == "succeeded", final
    assert final["lost_count"] == KILLS and final["step"] == MAX_STEPS

    with platform.http() as http:
        series = http.get(f"/jobs/{job_id}/metrics").json()["series"]
    # Every step once: the resumed runs re-emit the steps after their checkpoint; the ingest keeps one.
    for key in ("loss", "learning_rate", "grad_norm"):
        steps = [row[0] for row in series[key]]
        assert steps == list(range(1, MAX_STEPS + 1)), f"{key}: missing or doubled steps"

    events = platform.events(job_id)
    # Found lost by the restarted worker's first heartbeat, or by the reaper after HEARTBEAT_TIMEOUT.
    lost = [e for e in events if e.startswith("lost: fault-gpu0@")]
    resumed = [e for e in events if "resumed the job (interrupted at step" in e]
    assert len(lost) == KILLS, events
    assert len(resumed) == KILLS, events
    # Each run after a kill starts from a checkpoint (save_steps=5; the first kill is at step >= 4).
    from_checkpoint = [e for e in resumed if "from its checkpoint at step" in e]
    assert len(from_checkpoint) >= KILLS - 1, resumed

    record_property("killed_at_steps", killed_at)
    record_property("requeue_seconds", [round(s, 1) for s in requeue_s])
    print(f"\nkilled at steps {killed_at}; kill -> requeued in {[round(s, 1) for s in requeue_s]} s")
    print("\n".join(resumed))
