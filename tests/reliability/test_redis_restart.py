"""Production mode: Redis (the Celery broker and the channel layer) is shut down without saving and
started again mid-training. The running job goes on (training reports over HTTP; its points are in
PostgreSQL), every step is recorded once, a websocket viewer reconnects with ?after=<last id> and
ends with exactly the stored series, and the worker takes new jobs afterwards.

Shares the machine's Redis with the other production tests: faults-marked, run in its own CI stage."""

from __future__ import annotations

import json
import subprocess
import threading
import time

import pytest
from websockets.exceptions import ConnectionClosed, InvalidStatus
from websockets.sync.client import connect

from tests.e2e.test_training_live import HYPERPARAMS, start_job

pytestmark = [pytest.mark.e2e, pytest.mark.production, pytest.mark.faults]

MAX_STEPS = 300
REDIS_START = [
    "redis-server", "--daemonize", "yes", "--bind", "127.0.0.1", "-::1", "--port", "6379",
    "--save", "", "--appendonly", "no",
]  # fmt: skip


class Viewer(threading.Thread):
    """A websocket client like the job page: on a close, an error or 15 s of silence, it reconnects
    with the last point id it has."""

    def __init__(self, platform, job_id: str):
        super().__init__(daemon=True)
        self.platform, self.job_id = platform, job_id
        self.seen: dict[tuple[str, int], float] = {}
        self.duplicates = 0
        self.connections = 0
        self.live_after_restart = 0
        self.restarted = threading.Event()
        self.done = threading.Event()
        self.status = ""

    def run(self) -> None:
        last_id = 0
        headers = {"Authorization": f"Bearer {self.platform.token}"}
        deadline = time.monotonic() + 400
        while not self.done.is_set() and time.monotonic() < deadline:
            url = f"{self.platform.ws_url}/ws/jobs/{self.job_id}/?after={last_id}"
            try:
                with connect(url, additional_headers=headers, origin=self.platform.base_url) as ws:
                    self.connections += 1
                    while True:
                        message = json.loads(ws.recv(timeout=15))
                        points = []
                        if message["type"] == "snapshot":
                            points = [(k, s, v) for k, rows in message["series"].items() for s, v, _ in rows]
                            self.status = message["job"]["status"]
                        elif message["type"] == "points":
                            points = [(p["key"], p["step"], p["value"]) for p in message["points"]]
                            if self.restarted.is_set():
                                self.live_after_restart += len(points)
                        elif message["type"] == "status":
                            self.status = message["job"]["status"]
                        for key, step, value in points:
                            self.duplicates += (key, step) in self.seen
                            self.seen[(key, step)] = value
                        last_id = max(last_id, message.get("last_id", 0))
                        if self.status in ("succeeded", "failed", "cancelled"):
                            self.done.set()
                            return
            except (ConnectionClosed, InvalidStatus, TimeoutError, OSError):
                time.sleep(0.5)


def _redis_up() -> bool:
    return subprocess.run(["redis-cli", "ping"], capture_output=True, text=True).stdout.strip() == "PONG"


def _wait_job(http, job_id, predicate, timeout: float) -> dict:
    deadline = time.monotonic() + timeout
    while not predicate(job := http.get(f"/jobs/{job_id}").json()):
        assert time.monotonic() < deadline, job
        time.sleep(0.3)
    return job


def test_restarting_redis_mid_training_loses_nothing(production_platform, record_property):
    platform = production_platform
    job_id = start_job(
        platform,
        hyperparams={**HYPERPARAMS, "max_steps": MAX_STEPS, "batch_size": 4},
        checkpointing={"save_steps": 10, "save_total_limit": 2},
    )
    viewer = Viewer(platform, job_id)
    viewer.start()
    try:
        with platform.http() as http:
            _wait_job(http, job_id, lambda j: j["status"] == "running" and j["progress"]["step"] >= 10, 240)
            before = viewer.connections
            subprocess.run(["redis-cli", "shutdown", "nosave"], capture_output=True)
            while _redis_up():
                time.sleep(0.1)
            down = time.monotonic()
            time.sleep(3)
            subprocess.run(REDIS_START, check=True, capture_output=True)
            while not _redis_up():
                time.sleep(0.1)
            print(f"\nredis down for {time.monotonic() - down:.1f} s")
            viewer.restarted.set()
            assert http.get(f"/jobs/{job_id}").json()["status"] == "running", (
                "the outage was not mid-training"
            )
            job = _wait_job(http, job_id, lambda j: j["status"] in ("succeeded", "failed"), 300)
            assert job["status"] == "succeeded", job
            stored = http.get(f"/jobs/{job_id}/metrics").json()["series"]
        viewer.join(60)
    finally:
        viewer.done.set()
    assert [row[0] for row in stored["loss"]] == list(range(1, MAX_STEPS + 1))
    # The viewer reconnected and holds exactly what the server stored, each point once.
    assert viewer.connections > before, "the websocket viewer never reconnected"
    assert viewer.duplicates == 0
    assert viewer.live_after_restart > 0, "no point arrived live after the restart"
    assert set(viewer.seen) == {(k, row[0]) for k, rows in stored.items() for row in rows}
    record_property("viewer_connections", viewer.connections)
    print(
        f"viewer connections: {viewer.connections}; live points after the restart: {viewer.live_after_restart}"
    )

    # The worker's broker connection came back: a new job is picked up and runs, and the channel layer
    # delivers its points live again.
    short = start_job(platform, hyperparams={**HYPERPARAMS, "max_steps": 30, "batch_size": 4})
    live = Viewer(platform, short)
    live.restarted.set()
    live.start()
    with platform.http() as http:
        job = _wait_job(http, short, lambda j: j["status"] in ("succeeded", "failed"), 240)
    live.join(60)
    live.done.set()
    assert job["status"] == "succeeded", job
    assert live.live_after_restart > 0, "no point of the new job arrived live after the restart"
    assert {step for key, step in live.seen if key == "loss"} == set(range(1, 31))
