"""A job with `gpus: 2` runs as two processes under torchrun (here on CPU, gloo); a cancel from the API
reaches rank 0's reporter only, and the all-reduced stop flag must stop both ranks together."""

from __future__ import annotations

import time

import psutil
import pytest

from tests.e2e.test_training_live import HYPERPARAMS, start_job

pytestmark = pytest.mark.e2e


def _ranks() -> list[psutil.Process]:
    """The engine processes torchrun started (their command line names the engine's CLI module)."""
    found = []
    for proc in psutil.process_iter(["cmdline"]):
        cmdline = proc.info["cmdline"] or []
        if "experiments.training" in cmdline and "torch.distributed.run" not in " ".join(cmdline):
            found.append(proc)
    return found


def test_a_cancel_stops_every_rank_of_a_two_process_job(embedded_platform):
    job_id = start_job(
        embedded_platform, hyperparams={**HYPERPARAMS, "epochs": 400, "device": "cpu", "gpus": 2}
    )
    with embedded_platform.http() as http:
        deadline = time.monotonic() + 180
        while http.get(f"/jobs/{job_id}").json()["progress"]["step"] < 5:
            assert time.monotonic() < deadline, "the job never started"
            time.sleep(0.3)
        assert len(_ranks()) == 2  # two engine processes are training it
        assert http.post(f"/jobs/{job_id}/cancel").json()["cancel_requested"] is True
        while (job := http.get(f"/jobs/{job_id}").json())["status"] == "running":
            assert time.monotonic() < deadline, "the job did not stop"
            time.sleep(0.3)
        assert job["status"] == "cancelled"
        assert 5 <= job["progress"]["step"] < job["progress"]["total_steps"]
        # Both ranks left (rank 1 never hears the API: only the shared stop flag stops it).
        gone = time.monotonic() + 30
        while _ranks():
            assert time.monotonic() < gone, "a rank is still running after the cancel"
            time.sleep(0.3)
