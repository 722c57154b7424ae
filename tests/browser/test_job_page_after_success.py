"""A job that succeeds while its page is open shows its duration, final metrics and the model version
(Promote/Chat enabled) without a reload: they stayed "—", "None reported yet" and disabled."""

from __future__ import annotations

import json
from datetime import timedelta

import pytest

from tests.platform import browser_log_in


@pytest.mark.django_db
def test_the_logs_last_line_names_artifacts_not_server_paths(client, demo_config, settings):
    from experiments.jobs import job_report_status, job_start

    job = job_start(owner=demo_config.owner, config=demo_config)
    job_report_status(job=job, status="running", worker="w1")
    root = f"/srv/t4dm/artifacts/{job.public_id}"
    result = {"final_loss": 1.23456, "global_step": 20, "total_steps": 20, "stopped": "completed",
              "output_dir": root, "final_model_path": f"{root}/final",
              "best_checkpoint": f"{root}/checkpoint-20"}  # fmt: skip
    job_report_status(job=job, status="succeeded", final_model_path=f"{root}/final", result=result)
    client.force_login(job.owner)
    html = client.get(f"/jobs/{job.public_id}/").content.decode()
    last = html.split('id="job-log"')[1].split("</ol>")[0]
    assert "/srv/t4dm" not in last
    assert "{" not in last  # a sentence, not the worker's raw JSON
    assert f"model {job.public_id}/final" in last
    assert f"best checkpoint {job.public_id}/checkpoint-20" in last
    assert "final loss 1.2346" in last


@pytest.mark.e2e
@pytest.mark.browser
def test_success_updates_overview_and_buttons_live(page, live_server, transactional_db, demo_config):
    from experiments.jobs import job_start
    from experiments.models import Checkpoint, JobStatus
    from experiments.selectors import job_to_dict
    from models_registry.models import ModelVersion, RegisteredModel

    job = job_start(owner=demo_config.owner, config=demo_config)
    job.status = JobStatus.RUNNING
    job.started_at = job.created_at
    job.save(update_fields=["status", "started_at"])
    Checkpoint.objects.create(job=job, step=10, path="/nowhere/checkpoint-10", metrics={"loss": 2.5})
    sockets = []
    # live_server has no websocket: a stand-in server lets the test send what the job's group sends
    page.route_web_socket("**/ws/jobs/**", lambda ws: sockets.append(ws))
    base = live_server.url
    browser_log_in(page, base)
    page.goto(f"{base}/jobs/{job.public_id}/")
    page.wait_for_function("document.getElementById('job-status').textContent === 'running'")
    assert page.locator("#ov-duration").inner_text() != "3m 2s"
    assert "None reported yet" in page.locator("#job-overview").inner_text()
    assert page.locator("#checkpoints button:has-text('Promote')").is_disabled()

    job.status = JobStatus.SUCCEEDED
    job.finished_at = job.started_at + timedelta(minutes=3, seconds=2)
    job.latest_metrics = {"loss": 1.5}
    job.save(update_fields=["status", "finished_at", "latest_metrics"])
    registered = RegisteredModel.objects.get_or_create(owner=None, model_id="t4dm-live")[0]
    ModelVersion.objects.create(registered=registered, model_id="t4dm-live", version="1.0.0",
                                base_model="tiny", job=job)  # fmt: skip
    page.wait_for_function("window.t4dmJobSocket() && window.t4dmJobSocket().readyState === 1")
    sockets[-1].send(json.dumps({"type": "status", "job": job_to_dict(job)}))

    page.wait_for_function("document.getElementById('ov-duration').textContent.trim() === '3m 2s'")
    assert "None reported yet" not in page.locator("#job-overview").inner_text()
    assert page.locator("#ov-metrics").inner_text().count("1.5000") == 1
    promote = page.locator("#checkpoints a:has-text('Promote')")
    assert promote.get_attribute("href") == "/models/t4dm-live/1.0.0/"
    assert page.locator("#checkpoints a:has-text('Chat')").count() == 1
    assert page.locator("#job-status").inner_text() == "succeeded"
