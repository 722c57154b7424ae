"""The worker's reporter keeps training unblocked while the server is away, and delivers every point,
once, when it comes back."""

from __future__ import annotations

import sys
import time

import httpx
import pytest

from experiments.training.http_reporter import HttpReporter, PlatformClient
from tests.e2e.test_training_live import HYPERPARAMS, start_job
from tests.platform import Platform, free_port

pytestmark = pytest.mark.e2e


def test_points_reported_while_the_server_is_down_arrive_once_it_is_up(embedded_platform, tmp_path):
    job_id = start_job(embedded_platform, hyperparams={**HYPERPARAMS, "epochs": 1})
    port = free_port()  # nothing listens here yet
    reporter = HttpReporter(
        PlatformClient(f"http://127.0.0.1:{port}", job_id, embedded_platform.token),
        flush_interval=0.1,
        max_backoff=0.5,
    )
    for step in range(1, 201):
        reporter.metrics(step, {"sdk/down": step / 10})  # returns at once: only appends to a buffer
    time.sleep(1.5)  # several failed flushes with backoff
    assert reporter.sent_points == 0

    # The server comes up on that port (same database), and the buffered points flow.
    second = Platform(base_url=f"http://127.0.0.1:{port}", env=embedded_platform.env)
    second.spawn(
        sys.executable,
        "-m",
        "daphne",
        "-b",
        "127.0.0.1",
        "-p",
        str(port),
        "t4dm_site.asgi:application",
        log=tmp_path / "web2.log",
    )
    try:
        assert reporter.close(timeout=60) is True
    finally:
        second.stop()
    assert reporter.sent_points == 200
    with embedded_platform.http() as http:
        series = http.get(f"/jobs/{job_id}/metrics").json()["series"]["sdk/down"]
    assert [row[0] for row in series] == list(range(1, 201))


def test_a_rejected_report_does_not_block_the_rest(embedded_platform):
    job_id = start_job(embedded_platform, hyperparams={**HYPERPARAMS, "epochs": 1})
    reporter = HttpReporter(
        PlatformClient(embedded_platform.base_url, job_id, embedded_platform.token), flush_interval=0.05
    )
    reporter.metrics(
        1, {"sdk/ok": 1.0, "sdk/nan": float("nan")}
    )  # NaN is dropped client-side, with a log line
    reporter.metrics(2, {"sdk/ok": 2.0})
    assert reporter.close(timeout=30) is True
    with embedded_platform.http() as http:
        series = http.get(f"/jobs/{job_id}/metrics").json()["series"]
    assert [row[0] for row in series["sdk/ok"]] == [1, 2] and "sdk/nan" not in series
    assert httpx.get(embedded_platform.base_url + "/login/").status_code == 200
