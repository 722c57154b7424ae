"""The job page's chart in a real browser: a live batch that arrives after a later one (lower ids) is
drawn, each point once, and a reconnect asks from the last snapshot's cursor with a count of what came
live, so the server can resend a batch lost with the connection (experiments/tracking/consumers.py)."""

from __future__ import annotations

import json

import pytest

from tests.platform import browser_log_in

pytestmark = [pytest.mark.e2e, pytest.mark.browser]


def _batch(*points) -> str:
    return json.dumps(
        {
            "type": "points",
            "points": [
                {"id": i, "key": "loss", "step": s, "value": 3.0 - s / 10, "t": 1.7e9 + s} for i, s in points
            ],
            "last_id": max(i for i, _ in points),
        }
    )


def test_out_of_order_batches_reach_the_chart_once_and_a_reconnect_says_what_it_has(
    page, live_server, transactional_db, demo_config
):
    from experiments.jobs import job_start
    from experiments.models import JobStatus
    from experiments.selectors import job_to_dict

    job = job_start(owner=demo_config.owner, config=demo_config)
    job.status = JobStatus.RUNNING
    job.save(update_fields=["status"])
    sockets = []
    # live_server has no websocket: a stand-in server sends what the job's consumer would
    page.route_web_socket("**/ws/jobs/**", lambda ws: sockets.append(ws))
    browser_log_in(page, live_server.url)
    page.goto(f"{live_server.url}/jobs/{job.public_id}/")
    page.wait_for_function("window.t4dmJobSocket() && window.t4dmJobSocket().readyState === 1")
    assert sockets[0].url.endswith("?after=0")
    snapshot = {"type": "snapshot", "job": job_to_dict(job), "series": {"loss": [[1, 2.9, 1.7e9 + 1]]},
                "last_id": 10, "downsampled": False}  # fmt: skip
    sockets[0].send(json.dumps(snapshot))
    page.wait_for_function("document.getElementById('chart-loss').dataset.points === '1'")

    # the batch with the higher ids comes first, then the earlier one, then the earlier one again
    sockets[0].send(_batch((15, 4), (16, 5)))
    sockets[0].send(_batch((12, 2), (13, 3)))
    sockets[0].send(_batch((13, 3)))

    page.wait_for_function("document.getElementById('chart-loss').dataset.points === '5'")
    steps = page.evaluate("document.getElementById('chart-loss').data[0].x")
    assert steps == [1, 2, 3, 4, 5]

    # the connection drops: the page resumes from its snapshot, saying it has 4 live points up to id 16
    sockets[0].close()
    for _ in range(100):  # the page waits half a second before it reconnects
        if len(sockets) == 2:
            break
        page.wait_for_timeout(100)
    assert len(sockets) == 2 and sockets[1].url.endswith("?after=10&seen=4&upto=16")
