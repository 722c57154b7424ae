"""Fault-injection fixtures: the embedded platform with its web side (`t4dm_up --no-worker`, which also
runs the lost-job reaper) and its Celery worker as separate processes, so a test can kill, stop or
restart either one for real."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from tests.platform import ROOT, Platform, _boot, _clean_env, free_port

HEARTBEAT_TIMEOUT = 6.0  # seconds; the worker heartbeats every 0.5 s
TERMINAL = ("succeeded", "failed", "cancelled")


class FaultPlatform(Platform):
    def __init__(self, data: Path, tiny_model_dir: Path, **env: str):
        port = free_port()
        super().__init__(
            base_url=f"http://127.0.0.1:{port}",
            env={
                **_clean_env(),
                "T4DM_DATA_DIR": str(data),
                "T4DM_TINY_MODEL_DIR": str(tiny_model_dir),
                "T4DM_COMPARE_TO_BASE": "0",
                "T4DM_SERVER_URL": f"http://127.0.0.1:{port}",
                "T4DM_HEARTBEAT_TIMEOUT": str(HEARTBEAT_TIMEOUT),
                "T4DM_WORKER_HEARTBEAT_SECONDS": "0.5",
                "T4DM_REAP_INTERVAL_SECONDS": "0.5",
                "T4DM_LOST_JOB_MAX_REQUEUES": "50",
                **env,
            },
        )
        self.data, self.port = data, port
        self.web: subprocess.Popen | None = None
        self.worker: subprocess.Popen | None = None
        self._logs = 0

    def _popen(
        self, args: list[str], log: str, env: dict[str, str] | None = None, **kwargs
    ) -> subprocess.Popen:
        self._logs += 1
        handle = open(self.data / f"{self._logs:02d}-{log}.log", "w")  # noqa: SIM115 - lives with the process
        process = subprocess.Popen(
            args,
            cwd=ROOT,
            env={**self.env, **(env or {})},
            stdout=handle,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            **kwargs,
        )
        self.processes.append(process)
        return process

    def start_web(self, **env: str) -> None:
        cmd = [sys.executable, "manage.py", "t4dm_up", "--no-worker", "--port", str(self.port)]
        self.web = self._popen(cmd, "web", env)
        self.wait_until_up()

    def wait_until_up(self, timeout: float = 90) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self.web.poll() is None, "the web side exited during start-up"
            try:
                if httpx.get(self.base_url + "/login/", timeout=2).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        raise TimeoutError("the ASGI server did not come up")

    def stop_web(self) -> None:
        self._end(self.web, signal.SIGTERM)

    def start_worker(self, name: str = "fault-gpu0", env: dict[str, str] | None = None, **kwargs) -> None:
        cmd = [sys.executable, "-m", "celery", "-A", "t4dm_site", "worker", "-Q", "training", "-P", "solo"]
        cmd += ["-n", f"{name}@%h", "--without-gossip", "--without-mingle", "--loglevel", "INFO"]
        self.worker = self._popen(cmd, "worker", env, **kwargs)

    def signal_worker(self, sig: int) -> None:
        os.killpg(self.worker.pid, sig)

    def kill_worker(self) -> None:
        """kill -9: no shutdown handler, no ack, no last report."""
        self._end(self.worker, signal.SIGKILL)

    def _end(self, process: subprocess.Popen | None, sig: int) -> None:
        if process is None or process.poll() is not None:
            return
        os.killpg(process.pid, sig)
        try:
            process.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(10)

    def stop(self) -> None:
        for process in self.processes:
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGCONT)  # a stopped worker cannot act on SIGTERM
        super().stop()

    # --- reading what the platform recorded (the embedded SQLite database, read-only) ---------------
    def query(self, sql: str, *params) -> list[tuple]:
        with sqlite3.connect(f"file:{self.data / 'db.sqlite3'}?mode=ro", uri=True, timeout=30) as conn:
            return conn.execute(sql, params).fetchall()

    def job_row(self, job_id: str) -> dict:
        [row] = self.query(
            "SELECT status, step, total_steps, lost_count, error FROM experiments_trainingjob WHERE id = ?",
            int(job_id.split("-")[1]),
        )
        return dict(zip(("status", "step", "total_steps", "lost_count", "error"), row, strict=True))

    def events(self, job_id: str) -> list[str]:
        return [
            m
            for (m,) in self.query(
                "SELECT message FROM experiments_jobevent WHERE job_id = ? ORDER BY id",
                int(job_id.split("-")[1]),
            )
        ]

    def wait_for(self, job_id: str, predicate, *, timeout: float, what: str) -> dict:
        deadline = time.monotonic() + timeout
        while True:
            row = self.job_row(job_id)
            if predicate(row):
                return row
            if time.monotonic() > deadline:
                raise AssertionError(f"{job_id}: timed out waiting for {what}; now {row}")
            time.sleep(0.05)


@pytest.fixture
def fault_platform(tmp_path, tiny_model_dir):
    """A fresh embedded platform per test (its own SQLite database, broker folder and artifacts)."""
    platform = FaultPlatform(tmp_path / "data", tiny_model_dir)
    (tmp_path / "data").mkdir()
    _boot(platform)
    try:
        yield platform
    finally:
        platform.stop()
