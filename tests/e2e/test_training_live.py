"""A job started through the API is trained by a separate Celery worker process, and its points reach
a real websocket client live — on the embedded default and on PostgreSQL + Redis."""

from __future__ import annotations

import json
import time

import pytest
from websockets.sync.client import connect

from tests.conftest import DEMO_ROWS

pytestmark = pytest.mark.e2e

HYPERPARAMS = {
    "learning_rate": 3e-3,
    "epochs": 25,
    "batch_size": 8,
    "gradient_accumulation": 1,
    "lora_r": 8,
    "lora_alpha": 16,
}


def start_job(platform, *, hyperparams=None, checkpointing=None) -> str:
    with platform.http() as http:
        dataset = http.post(
            "/datasets", files={"file": ("kb.jsonl", DEMO_ROWS.read_bytes())}, data={"task_type": "chat"}
        )
        assert dataset.status_code == 201, dataset.text
        config = http.post(
            "/configs",
            json={
                "model_base": "t4dm-tiny",
                "dataset_id": dataset.json()["dataset_id"],
                "hyperparams": hyperparams or HYPERPARAMS,
                "checkpointing": checkpointing or {"save_steps": 50, "save_total_limit": 2},
            },
        )
        assert config.status_code == 201, config.text
        job = http.post("/jobs", json={"config_id": config.json()["config_id"]})
        assert job.status_code == 201, job.text
        return job.json()["job_id"]


def _watch(platform, job_id: str, *, reconnect_after_points: int | None = None, timeout: float = 180):
    """Collect every point the websocket delivers until the job ends; optionally drop the connection
    once mid-run and resume from the last id. Returns (points by (key, step), status sequence, live count)."""
    seen: dict[tuple[str, int], float] = {}
    duplicates = 0
    statuses: list[str] = []
    live_messages = 0
    last_id = 0
    reconnected = reconnect_after_points is None
    deadline = time.monotonic() + timeout
    headers = {"Authorization": f"Bearer {platform.token}"}
    while time.monotonic() < deadline:
        url = f"{platform.ws_url}/ws/jobs/{job_id}/?after={last_id}"
        with connect(url, additional_headers=headers, origin=platform.base_url) as ws:
            while time.monotonic() < deadline:
                message = json.loads(ws.recv(timeout=60))
                if message["type"] == "snapshot":
                    for key, rows in message["series"].items():
                        for step, value, _t in rows:
                            duplicates += (key, step) in seen
                            seen[(key, step)] = value
                    last_id = max(last_id, message["last_id"])
                    statuses.append(message["job"]["status"])
                elif message["type"] == "points":
                    live_messages += 1
                    for p in message["points"]:
                        duplicates += (p["key"], p["step"]) in seen
                        seen[(p["key"], p["step"])] = p["value"]
                    last_id = max(last_id, message["last_id"])
                elif message["type"] == "status":
                    statuses.append(message["job"]["status"])
                if statuses and statuses[-1] in ("succeeded", "failed", "cancelled"):
                    return seen, statuses, live_messages, duplicates
                if not reconnected and len(seen) >= reconnect_after_points:
                    reconnected = True
                    break  # leave the `with`: the socket closes; points keep arriving meanwhile
        time.sleep(0.5)
    raise TimeoutError(f"job {job_id} did not finish; statuses seen: {statuses}")


@pytest.mark.parametrize("mode", ["embedded", "production"])
def test_a_job_trains_on_the_worker_and_streams_live_without_gaps(mode, request):
    platform = request.getfixturevalue(f"{mode}_platform")
    job_id = start_job(platform)
    seen, statuses, live_messages, duplicates = _watch(platform, job_id, reconnect_after_points=20)

    assert statuses[-1] == "succeeded", statuses
    assert "running" in statuses
    assert live_messages > 0, "no point arrived live; everything came in snapshots"
    assert duplicates == 0
    with platform.http() as http:
        job = http.get(f"/jobs/{job_id}").json()
        stored = http.get(f"/jobs/{job_id}/metrics").json()["series"]
    # What the client assembled (snapshot + live + a reconnect) is exactly what the server stored.
    assert {(k, row[0]) for k, rows in stored.items() for row in rows} == set(seen)
    loss_steps = sorted(step for key, step in seen if key == "loss")
    assert loss_steps == list(range(1, job["progress"]["total_steps"] + 1))
    assert seen[("loss", loss_steps[-1])] < seen[("loss", loss_steps[0])] - 0.3, "the loss did not fall"
    assert job["status"] == "succeeded" and job["progress"]["step"] == job["progress"]["total_steps"] > 0


def test_cancel_stops_a_running_job(embedded_platform):
    job_id = start_job(embedded_platform, hyperparams={**HYPERPARAMS, "epochs": 400})
    with embedded_platform.http() as http:
        deadline = time.monotonic() + 120
        while http.get(f"/jobs/{job_id}").json()["progress"]["step"] < 5:
            assert time.monotonic() < deadline, "the job never started"
            time.sleep(0.3)
        assert http.post(f"/jobs/{job_id}/cancel").json()["cancel_requested"] is True
        while (job := http.get(f"/jobs/{job_id}").json())["status"] == "running":
            assert time.monotonic() < deadline, "the job did not stop"
            time.sleep(0.3)
    assert job["status"] == "cancelled"
    assert job["progress"]["step"] < job["progress"]["total_steps"]
