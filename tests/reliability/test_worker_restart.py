"""`t4dm_up` (the embedded default, `make run`) keeps the platform up when its worker dies: kill -9 of
the worker, twice, and t4dm_up starts a new one each time — after 1 s, then 2 s (back-off) — while the
web server goes on answering; a job queued afterwards runs to the end on the new worker. Before, t4dm_up
stopped the web server too ("stopped because worker exited")."""

from __future__ import annotations

import re
import time

import pytest

from tests.conftest import DEMO_ROWS
from tests.reliability.embedded_up import up_platform  # noqa: F401 - fixture

pytestmark = [pytest.mark.e2e, pytest.mark.faults]


def test_t4dm_up_restarts_a_killed_worker_with_backoff_and_keeps_serving(up_platform):  # noqa: F811
    platform = up_platform
    platform.start_up()
    first = platform.worker_pid()

    platform.kill_up_worker()
    assert platform.serving()  # the web server does not go down with it
    second = platform.worker_pid(other_than=first)
    assert platform.web.poll() is None

    # Killed again at once (it ran less than a minute): the next restart waits twice as long.
    time.sleep(1)
    platform.kill_up_worker()
    killed = time.monotonic()
    third = platform.worker_pid(other_than=second)
    assert time.monotonic() - killed >= 1.5, "the second restart came without back-off"
    assert platform.serving()

    log = platform.log_text()
    assert re.search(rf"worker \(pid {first}\) exited with status -9 .*restarting it in 1 s", log), log
    assert re.search(rf"worker \(pid {second}\) exited with status -9 .*restarting it in 2 s", log), log
    assert f"worker restarted (restart 2, pid {third})" in log, log
    assert "stopped because" not in log

    # The new worker does real work: a short job queued now is trained to the end.
    job_id = platform.start_job(platform.upload("kb.jsonl", DEMO_ROWS.read_bytes()), max_steps=5)
    final = platform.wait_for(
        job_id, lambda r: r["status"] in ("succeeded", "failed", "cancelled"), timeout=240, what="the end"
    )
    assert final["status"] == "succeeded", final
    assert platform.worker_pid() == third and platform.web.poll() is None
