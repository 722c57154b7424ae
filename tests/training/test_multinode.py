"""Multi-node jobs (``nodes: M``, experiments/training/rendezvous.py): two "nodes" as two real Celery
workers (the product's worker entry point) on this machine, against the embedded platform, meeting
through torchrun's c10d rendezvous on CPU (gloo). The job's two messages are claimed one per worker; the
per-step losses equal one process's with both ranks' samples; the job succeeds once and its metrics are
stored once. Also: the spec's ``nodes`` field and the rendezvous settings."""

from __future__ import annotations

import time

import pytest

from experiments.training import rendezvous
from experiments.training.spec import SpecError, TrainingSpec
from tests.conftest import DEMO_ROWS

HYPERPARAMS = {
    "learning_rate": 3e-3, "gradient_accumulation": 1, "max_steps": 4, "lora_dropout": 0.0, "seed": 0,
    "logging_steps": 1, "device": "cpu", "sharding": "fsdp", "gpus": 1,
}  # fmt: skip


def _spec(**hyperparameters) -> dict:
    return {
        "job_id": "job-001",
        "model_base": "/m",
        "approach": "full",
        "task_type": "chat",
        "hyperparameters": hyperparameters,
        "dataset": {"train": "/d.jsonl", "validation": None},
        "output_dir": "/o",
    }


@pytest.mark.parametrize("bad", [0, -1, 1.5, "2", True])
def test_nodes_must_be_a_whole_number_of_machines(bad) -> None:
    with pytest.raises(SpecError) as caught:
        TrainingSpec.from_dict(_spec(nodes=bad))
    assert caught.value.field == "hyperparameters.nodes"
    assert TrainingSpec.from_dict(_spec(nodes=3, gpus=2)).hyperparameters.nodes == 3
    assert TrainingSpec.from_dict(_spec()).hyperparameters.nodes == 1


def test_rendezvous_settings(monkeypatch) -> None:
    monkeypatch.setenv("T4DM_RDZV_HOST", "10.0.0.7")
    monkeypatch.setenv("T4DM_RDZV_PORTS", "29400-29401")
    assert rendezvous.rendezvous_ports() == range(29400, 29402)
    assert rendezvous.pick_endpoint().startswith("10.0.0.7:294")
    monkeypatch.setenv("T4DM_RDZV_PORTS", "many")
    with pytest.raises(ValueError, match="T4DM_RDZV_PORTS"):
        rendezvous.rendezvous_ports()
    args = rendezvous.torchrun_arguments(
        nodes=2, processes=4, endpoint="h:29400", run_id="job-007", is_host=True, timeout=60
    )
    assert "--nnodes=2" in args and "--nproc-per-node=4" in args and "--rdzv-backend=c10d" in args
    assert "--rdzv-id=job-007" in args and "--rdzv-conf=is_host=true,join_timeout=60" in args


def _start(platform, hyperparams: dict) -> str:
    with platform.http() as http:
        dataset = http.post(
            "/datasets", files={"file": ("kb.jsonl", DEMO_ROWS.read_bytes())}, data={"task_type": "chat"}
        )
        assert dataset.status_code == 201, dataset.text
        config = http.post(
            "/configs",
            json={
                "model_base": "t4dm-tiny",
                "approach": "full",
                "dataset_id": dataset.json()["dataset_id"],
                "hyperparams": hyperparams,
                "checkpointing": {"save_steps": 4, "save_total_limit": 1},
            },
        )
        assert config.status_code == 201, config.text
        job = http.post("/jobs", json={"config_id": config.json()["config_id"]})
        assert job.status_code == 201, job.text
        return job.json()["job_id"]


def _losses(platform, job_id: str) -> list[tuple[int, float]]:
    with platform.http() as http:
        series = http.get(f"/jobs/{job_id}/metrics").json()["series"]
    return [(row[0], row[1]) for row in series["loss"]]


@pytest.fixture(scope="module")
def two_nodes(tmp_path_factory, tiny_model_dir):
    """The embedded platform's web side and two Celery workers ("nodes" node-a and node-b), as
    `celery -A t4dm_site worker -Q training` starts them in production."""
    from tests.platform import _boot
    from tests.reliability.conftest import FaultPlatform

    data = tmp_path_factory.mktemp("multinode") / "data"
    data.mkdir()
    platform = FaultPlatform(
        data,
        tiny_model_dir,
        T4DM_RDZV_HOST="127.0.0.1",
        T4DM_RDZV_JOIN_TIMEOUT="120",
        T4DM_HEARTBEAT_TIMEOUT="60",
    )
    _boot(platform)
    try:
        platform.start_web()
        platform.start_worker("node-a")
        platform.start_worker("node-b")
        _wait(lambda: len(platform.query("SELECT name FROM experiments_worker")) == 2, 90, "two workers")
        yield platform
    finally:
        platform.stop()


def _wait(predicate, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.2)


def _idle_workers(platform) -> int:
    return len(platform.query("SELECT name FROM experiments_worker WHERE current_job_id IS NULL"))


@pytest.mark.e2e
def test_two_workers_train_a_two_node_job_as_one_process_does(two_nodes) -> None:
    from tests.reliability.conftest import TERMINAL

    platform = two_nodes
    job_id = _start(platform, {**HYPERPARAMS, "batch_size": 2, "nodes": 2})
    row = platform.wait_for(job_id, lambda r: r["status"] in TERMINAL, timeout=150, what="the end")
    events = platform.events(job_id)
    assert row["status"] == "succeeded", (row, events)
    # Each worker ran one node; one rendezvous; one start, one end.
    joined = [e for e in events if "-node rendezvous at 127.0.0.1:" in e]
    assert sorted(e.split(" (")[0] for e in joined) == ["node 0", "node 1"], events
    assert {e.split("(")[1].split("@")[0] for e in joined} == {"node-a", "node-b"}, events
    assert sum(e.startswith("worker ") and "started training" in e for e in events) == 1, events
    assert sum(e.startswith("succeeded:") for e in events) == 1, events
    assert not [e for e in events if e.startswith("failed")], events
    [(record,)] = platform.query(
        "SELECT rendezvous FROM experiments_trainingjob WHERE id = ?", int(job_id.split("-")[1])
    )
    assert '"127.0.0.1:' in record
    two_nodes_losses = _losses(platform, job_id)
    assert [step for step, _ in two_nodes_losses] == [1, 2, 3, 4]  # every step once

    # The reference: one process taking both ranks' samples each step (a one-node job).
    single_id = _start(platform, {**HYPERPARAMS, "batch_size": 4})
    single = platform.wait_for(single_id, lambda r: r["status"] in TERMINAL, timeout=120, what="the end")
    assert single["status"] == "succeeded", single
    one = _losses(platform, single_id)
    assert [step for step, _ in one] == [1, 2, 3, 4]
    # fp32 on CPU; the sums are reduced in another order across the two nodes
    assert [v for _, v in two_nodes_losses] == pytest.approx([v for _, v in one], rel=1e-3), (
        two_nodes_losses,
        one,
    )


@pytest.mark.e2e
def test_a_cancel_stops_both_nodes_once(two_nodes) -> None:
    from tests.reliability.conftest import TERMINAL

    platform = two_nodes
    _wait(lambda: _idle_workers(platform) == 2, 60, "both workers idle")
    job_id = _start(platform, {**HYPERPARAMS, "batch_size": 2, "nodes": 2, "max_steps": 400})
    platform.wait_for(
        job_id, lambda r: r["status"] == "running" and r["step"] >= 2, timeout=150, what="step 2"
    )
    with platform.http() as http:
        assert http.post(f"/jobs/{job_id}/cancel").json()["cancel_requested"] is True
    row = platform.wait_for(job_id, lambda r: r["status"] in TERMINAL, timeout=60, what="the cancel")
    events = platform.events(job_id)
    assert row["status"] == "cancelled" and row["step"] < 400, (row, events)
    assert sum(e.startswith("cancelled by request") for e in events) == 1, events
    # Both nodes stopped: each worker's heartbeat says it runs nothing any more.
    _wait(lambda: _idle_workers(platform) == 2, 60, "both workers to let go of the job")


def test_the_first_node_publishes_the_rendezvous_for_its_attempt_only(
    api, researcher, demo_config, django_capture_on_commit_callbacks
):
    from django.db import transaction
    from django.test import Client

    from experiments.jobs import _job_lost
    from experiments.models import TrainingJob

    with django_capture_on_commit_callbacks(execute=False):
        job_id = api.post(researcher, "/jobs", {"config_id": demo_config.public_id}).json()["job_id"]
    job = TrainingJob.objects.get(pk=int(job_id.split("-")[1]))
    worker = Client(headers={"Authorization": f"Bearer {job.issue_token()}"})

    def post(path, data):
        return worker.post(f"/api/v1/worker/jobs/{job_id}/{path}", data, content_type="application/json")

    def error(response):
        return response.status_code, response.json()["error"]["code"]

    assert error(post("rendezvous", {"endpoint": "10.0.0.7:29400"})) == (409, "not_running")
    assert post("status", {"status": "running", "worker": "node-a"}).status_code == 200
    assert post("rendezvous", {"endpoint": "10.0.0.7"}).status_code == 400  # no port
    published = post("rendezvous", {"endpoint": "10.0.0.7:29400"})
    assert published.status_code == 200 and published.json()["endpoint"] == "10.0.0.7:29400"
    assert worker.get(f"/api/v1/worker/jobs/{job_id}/spec").json()["rendezvous"] == "10.0.0.7:29400"
    assert post("rendezvous", {"endpoint": "10.0.0.7:29400"}).status_code == 200  # a retried report
    assert error(post("rendezvous", {"endpoint": "10.0.0.8:29400"})) == (409, "rendezvous_taken")

    # A requeued attempt (its worker was lost) meets elsewhere: the old endpoint is not handed out.
    with django_capture_on_commit_callbacks(execute=False), transaction.atomic():
        _job_lost(TrainingJob.objects.select_for_update().get(pk=job.pk), reason="node-a went away")
    job.refresh_from_db()
    again = Client(headers={"Authorization": f"Bearer {job.issue_token()}"})
    assert again.get(f"/api/v1/worker/jobs/{job_id}/spec").json()["rendezvous"] is None
