"""The embedded default exactly as `make run` starts it — `manage.py t4dm_up`, which runs daphne and
supervises one local Celery worker — for tests that kill that worker and watch t4dm_up bring it back."""

from __future__ import annotations

import os
import signal
import sys
import time
from pathlib import Path

import httpx
import psutil
import pytest

from tests.reliability.conftest import FaultPlatform


class UpPlatform(FaultPlatform):
    def start_up(self) -> None:
        cmd = [sys.executable, "manage.py", "t4dm_up", "--port", str(self.port)]
        self.web = self._popen(cmd, "t4dm_up")
        self.log = self.data / f"{self._logs:02d}-t4dm_up.log"
        self.wait_until_up()

    def worker_pid(self, *, other_than: int | None = None, timeout: float = 60) -> int:
        """The pid of t4dm_up's Celery worker (a new one when `other_than` is given)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self.web.poll() is None, f"t4dm_up exited:\n{self.log_text()}"
            for child in psutil.Process(self.web.pid).children(recursive=True):
                try:
                    if "celery" in child.cmdline() and child.pid != other_than and child.is_running():
                        if child.status() != psutil.STATUS_ZOMBIE:
                            return child.pid
                except psutil.NoSuchProcess:
                    continue
            time.sleep(0.1)
        raise AssertionError(f"no (new) worker under t4dm_up within {timeout} s:\n{self.log_text()}")

    def kill_up_worker(self) -> int:
        """kill -9 of the worker process alone (not t4dm_up, not daphne). Returns its pid."""
        pid = self.worker_pid()
        os.kill(pid, signal.SIGKILL)
        return pid

    def client(self) -> httpx.Client:
        """The admin's API client, patient: the first dataset upload imports the tokenizer libraries in
        the web process, which takes long on a loaded 2-core machine."""
        return httpx.Client(
            base_url=self.base_url + "/api/v1", headers={"Authorization": f"Bearer {self.token}"}, timeout=180
        )

    def start_job(self, dataset_id: str, *, max_steps: int = 5) -> str:
        with self.client() as http:
            config = http.post(
                "/configs",
                json={
                    "model_base": "t4dm-tiny",
                    "dataset_id": dataset_id,
                    "hyperparams": {"learning_rate": 3e-3, "max_steps": max_steps, "batch_size": 4},
                    "checkpointing": {"save_steps": 5, "save_total_limit": 2},
                },
            )
            assert config.status_code == 201, config.text
            job = http.post("/jobs", json={"config_id": config.json()["config_id"]})
            assert job.status_code == 201, job.text
            return job.json()["job_id"]

    def upload(self, name: str, content: bytes, *, task_type: str = "chat") -> str:
        with self.client() as http:
            response = http.post(
                "/datasets", files={"file": (name, content)}, data={"task_type": task_type, "name": name}
            )
        assert response.status_code in (201, 202), response.text
        return response.json()["dataset_id"]

    def log_text(self) -> str:
        return Path(self.log).read_text(errors="replace") if getattr(self, "log", None) else ""

    def serving(self) -> bool:
        try:
            return httpx.get(self.base_url + "/login/", timeout=10).status_code == 200
        except httpx.HTTPError:
            return False


@pytest.fixture
def up_platform(tmp_path, tiny_model_dir):
    """A fresh embedded platform per test under t4dm_up (its own SQLite database, broker and artifacts);
    heartbeat timeout 6 s, so a killed worker's unacknowledged message comes back after 6 s."""
    (tmp_path / "data").mkdir()
    platform = UpPlatform(tmp_path / "data", tiny_model_dir)
    from tests.platform import _boot

    _boot(platform)
    try:
        yield platform
    finally:
        platform.stop()
