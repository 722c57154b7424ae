"""A full disk or a read-only artifact folder during a checkpoint: the job fails with a message that
names the folder and the reason, and the checkpoint written before stays complete and loadable
(checkpoints are written to a staging folder and renamed into place)."""

from __future__ import annotations

import errno
import json
import os
import subprocess
from pathlib import Path

import pytest
from safetensors.torch import load_file

from tests.e2e.test_training_live import HYPERPARAMS, start_job
from tests.reliability.conftest import TERMINAL

pytestmark = [pytest.mark.e2e, pytest.mark.faults]


def _fill(folder: Path) -> None:
    """Write until the filesystem says no space left."""
    with open(folder / "filler.bin", "wb", buffering=0) as f:
        chunk = b"\0" * 65536
        try:
            while True:
                f.write(chunk)
        except OSError as exc:
            assert exc.errno == errno.ENOSPC
    try:
        while True:  # the last few bytes, so that not even a small file fits
            with open(folder / "filler.bin", "ab", buffering=0) as f:
                f.write(b"\0" * 512)
    except OSError:
        pass


@pytest.mark.parametrize("fault", ["disk_full", "read_only"])
def test_a_checkpoint_that_cannot_be_written_fails_the_job_clearly_and_keeps_the_last_one(
    fault_platform, fault
):
    if os.geteuid() != 0:
        pytest.skip("mounting a small tmpfs for the artifact folder needs root")
    platform = fault_platform
    platform.start_web()
    # The job's artifact folder is its own small filesystem; the worker starts once it is mounted.
    job_id = start_job(
        platform,
        hyperparams={**HYPERPARAMS, "max_steps": 40, "batch_size": 4},
        checkpointing={"save_steps": 10, "save_total_limit": None},
    )
    folder = platform.data / "artifacts" / "jobs" / job_id
    folder.mkdir(parents=True)
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64m", "tmpfs", str(folder)], check=True)
    try:
        platform.start_worker()
        platform.wait_for(
            job_id,
            lambda r: "checkpoint saved at step 10" in platform.events(job_id),
            timeout=240,
            what="the first checkpoint",
        )
        if fault == "disk_full":
            _fill(folder)
            reason = "no space left on device"
        else:
            subprocess.run(["mount", "-o", "remount,ro", str(folder)], check=True)
            reason = "read-only file system"
        row = platform.wait_for(job_id, lambda r: r["status"] in TERMINAL, timeout=240, what="the end")
        assert row["status"] == "failed", row
        assert row["error"] == f"checkpoint could not be written to {folder / 'checkpoint-20'}: {reason}"
        assert platform.worker.poll() is None, "the worker must survive its job's failure"

        # The checkpoint before is complete and loadable; no half-written one is left under its name.
        kept = folder / "checkpoint-10"
        assert json.loads((kept / "trainer_state.json").read_text())["global_step"] == 10
        assert load_file(str(kept / "adapter_model.safetensors"))
        assert {"optimizer.pt", "scheduler.pt", "rng_state.pth", "adapter_config.json"} <= {
            p.name for p in kept.iterdir()
        }
        assert not (folder / "checkpoint-20").exists()
        assert not (folder / ".staging" / "checkpoint-20").exists()
        with platform.http() as http:
            assert http.get(f"/jobs/{job_id}").json()["error"] == row["error"]
    finally:
        platform.kill_worker()
        subprocess.run(["umount", "-l", str(folder)], check=False)
