"""Job page charts (issue 19, "Job page"): a resumed job shows its parent's curve up to the step it
resumed from; the evaluations' metrics are a chart; smoothing leaves the learning rate alone and a
hover names the smoothed and the raw value; a zoom or a hover on one panel applies to every panel."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.platform import browser_log_in

pytestmark = [pytest.mark.e2e, pytest.mark.browser]

SHOTS = Path("/tmp/auditA-shots")


@pytest.fixture
def resumed_job(transactional_db, demo_config):
    from experiments.ingest import PointIn, metric_points_ingest
    from experiments.models import Checkpoint, Evaluation, JobStatus, TrainingJob

    owner = demo_config.owner
    parent = TrainingJob.objects.create(owner=owner, config=demo_config, experiment=demo_config.experiment)
    points = [
        PointIn("loss", s, 3.0 - s / 10 + (0.3 if s % 2 else 0), wall_time=1_700_000_000 + s)
        for s in range(1, 21)
    ]
    points += [
        PointIn("learning_rate", s, 1e-3 * (1 - s / 40), wall_time=1_700_000_000 + s) for s in range(1, 21)
    ]
    points += [PointIn("tokens_per_sec", s, 8000 + s, wall_time=1_700_000_000 + s) for s in range(1, 21)]
    metric_points_ingest(job=parent, points=points)
    checkpoint = Checkpoint.objects.create(
        job=parent, step=10, path="/nowhere/checkpoint-10", metrics={"loss": 2.0}
    )
    parent.status = JobStatus.CANCELLED
    parent.save(update_fields=["status"])
    child = TrainingJob.objects.create(
        owner=owner, config=demo_config, experiment=demo_config.experiment, resume_from=checkpoint,
        status=JobStatus.SUCCEEDED,
    )  # fmt: skip
    Evaluation.objects.create(
        owner=owner, job=child, status="succeeded", kind="evaluate", model_path="x",
        metrics={"perplexity": 9.1, "accuracy": 0.4, "note": "text is not charted"},
    )  # fmt: skip
    return parent, child


def test_parent_curve_eval_chart_smoothing_and_shared_axis(page, live_server, resumed_job):
    SHOTS.mkdir(exist_ok=True)
    parent, child = resumed_job
    browser_log_in(page, live_server.url)
    page.goto(f"{live_server.url}/jobs/{child.public_id}/")
    # the parent's points up to step 10 (not after): the resumed job does not start with empty charts
    page.wait_for_function("Number(document.getElementById('chart-loss').dataset.points) > 0")
    steps = page.evaluate("document.getElementById('chart-loss').data[0].x")
    assert steps == list(range(1, 11))
    assert page.evaluate("document.getElementById('chart-loss').data[0].name") == f"loss · {parent.public_id}"

    # evaluation metrics as bars (numbers only)
    assert page.locator("#chart-evaluations").is_visible()
    bars = page.evaluate("document.getElementById('chart-evaluations').data.map(t => [t.type, t.x])")
    assert bars == [["bar", ["perplexity", "accuracy"]]]

    # smoothing: loss gets a smoothed and a raw trace, both hoverable; the learning rate is not smoothed
    page.locator("#smoothing").fill("0.6")
    page.wait_for_function("document.getElementById('chart-loss').data.length === 2")
    templates = page.evaluate("document.getElementById('chart-loss').data.map(t => t.hovertemplate)")
    assert any("(raw)" in t for t in templates) and any("(smoothed)" in t for t in templates)
    assert page.evaluate("document.getElementById('chart-learning_rate').data.length") == 1
    lr = page.evaluate("document.getElementById('chart-learning_rate').data[0].y")
    assert lr == pytest.approx([1e-3 * (1 - s / 40) for s in range(1, 11)])

    # a zoom on the loss panel zooms the others
    page.evaluate("Plotly.relayout(document.getElementById('chart-loss'), {'xaxis.range': [2, 5]})")
    page.wait_for_function(
        "JSON.stringify(document.getElementById('chart-learning_rate').layout.xaxis.range) === '[2,5]'"
    )
    assert page.evaluate("document.getElementById('chart-tokens_per_sec').layout.xaxis.range") == [2, 5]
    # a hover on the loss panel shows the same step's hover box on the learning-rate panel
    drag = page.locator("#chart-loss .nsewdrag").first
    drag.scroll_into_view_if_needed()
    box = drag.bounding_box()
    page.mouse.move(box["x"] + 5, box["y"] + 5)
    page.mouse.move(box["x"] + box["width"] / 3, box["y"] + box["height"] / 2, steps=5)  # step 3
    page.wait_for_function(
        "document.querySelector('#chart-loss .hoverlayer').textContent.includes('loss')"
        " && document.querySelector('#chart-learning_rate .hoverlayer').textContent.includes('learning_rate')"
    )
    page.screenshot(path=str(SHOTS / "job_charts_resumed.png"))
    # the mode bar (shown on hover) does not cover the panel's title, on a desktop nor on a phone
    for width in (1280, 390):
        page.set_viewport_size({"width": width, "height": 800})
        page.wait_for_timeout(300)
        drag = page.locator("#chart-loss .nsewdrag").first
        drag.hover()
        title = page.locator("#chart-loss .gtitle").bounding_box()
        bar = page.locator("#chart-loss .modebar").bounding_box()
        assert bar is not None and title is not None
        apart = title["x"] + title["width"] <= bar["x"] or title["y"] + title["height"] <= bar["y"]
        assert apart, (width, title, bar)
        page.screenshot(path=str(SHOTS / f"job_chart_title_{width}.png"))
