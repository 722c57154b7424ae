"""The config form's estimate panel in the system Chromium names the device the time applies to and
where the time comes from: a registered CPU worker's measured tokens/s (issue 20 item 3)."""

from __future__ import annotations

from pathlib import Path

import pytest
from django.utils import timezone

from experiments.models import Worker, WorkerThroughput

pytestmark = [pytest.mark.e2e, pytest.mark.browser]

SCREENSHOTS = Path(__file__).resolve().parents[2] / "test-results"


def test_the_estimate_panel_shows_the_training_device_and_the_measured_basis(live_server, page, demo_config):
    worker = Worker.objects.create(name="cpu0@box", gpu_count=0, last_heartbeat_at=timezone.now())
    WorkerThroughput.objects.create(
        worker=worker, size_class="<0.1B", approach="lora", device="cpu", tokens_per_sec=1234.4, samples=3
    )
    user = demo_config.owner
    page.goto(live_server.url + "/login/")
    page.fill("input[name=username]", user.username)
    page.fill("input[name=password]", "pw-" + user.username)
    page.click("button[type=submit], input[type=submit]")
    page.goto(live_server.url + "/configs/new/")
    page.wait_for_function(
        "document.getElementById('est-time_source').textContent.includes('measured')", timeout=30_000
    )
    assert page.inner_text("#est-training_device") == "cpu"
    assert page.inner_text("#est-time_source").startswith(
        "measured on worker cpu0@box: 1234 tokens/s over 3 jobs"
    )
    assert page.inner_text("#est-training_time").endswith(" on cpu")
    SCREENSHOTS.mkdir(exist_ok=True)
    page.screenshot(path=str(SCREENSHOTS / "estimate_panel_measured.png"), full_page=True)
