"""Live charts keep every stored point when metric batches reach a viewer out of id order (two ingest
requests in flight, the lean path's broadcast coalescer, several web processes): the job websocket
forwards a batch that a later one overtook, and the page's merge code (static/js/live_points.js, run
here in Node) draws each stored point once, by step. A reconnect asks for what it may have missed: the
server resends from the last snapshot when a batch went missing with the connection, and only what
is newer when nothing did."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest
from asgiref.sync import sync_to_async
from channels.layers import get_channel_layer
from channels.testing import WebsocketCommunicator
from django.test import override_settings

from experiments.ingest import PointIn, metric_points_ingest
from experiments.models import MetricPoint, TrainingJob
from experiments.tracking.live import job_group
from t4dm_site.asgi import application

pytestmark = pytest.mark.django_db(transaction=True)

IN_MEMORY = {"default": {"BACKEND": "channels.layers.InMemoryChannelLayer"}}
LIVE_POINTS_JS = Path(__file__).resolve().parents[2] / "static" / "js" / "live_points.js"

# Feeds the page's merge code the socket's messages in the order they came; prints each series by step
# and the query a reconnect would send.
NODE_DRIVER = """
const LivePoints = require(process.argv[1]);
const messages = JSON.parse(require("fs").readFileSync(0, "utf8"));
const live = new LivePoints();
for (const m of messages) {
  if (m.type === "snapshot") live.snapshot(m);
  else if (m.type === "points") live.points(m);
}
const series = {};
for (const key of live.series.keys()) series[key] = live.sorted(key).map((p) => [p[0], p[1]]);
process.stdout.write(JSON.stringify({series, query: live.query()}));
"""


@pytest.fixture
def job(demo_config):
    return TrainingJob.objects.create(
        owner=demo_config.owner, config=demo_config, experiment=demo_config.experiment
    )


def _communicator(job, query: str = "after=0") -> WebsocketCommunicator:
    headers = [
        (b"host", b"127.0.0.1"),
        (b"origin", b"http://127.0.0.1"),
        (b"authorization", f"Bearer {job.owner.raw_token}".encode()),
    ]
    return WebsocketCommunicator(application, f"/ws/jobs/{job.public_id}/?{query}", headers=headers)


@sync_to_async
def _store_unannounced(job, steps: list[int]) -> dict:
    """Store a batch whose broadcast has not reached anyone yet; return that broadcast (as the ingest
    sends it: ids ascending, the points as JSON text)."""
    rows = MetricPoint.objects.bulk_create(
        [
            MetricPoint(job=job, key="loss", step=s, value=10.0 - s, wall_time=1_700_000_000.0 + s)
            for s in steps
        ]
    )
    if rows[0].pk is None:  # a backend that does not return ids from a bulk insert
        rows = list(MetricPoint.objects.filter(job=job, step__in=steps).order_by("id"))
    points = [{"id": r.pk, "key": r.key, "step": r.step, "value": r.value, "t": r.wall_time} for r in rows]
    return {
        "type": "job.points",
        "first_id": points[0]["id"],
        "last_id": points[-1]["id"],
        "points_json": json.dumps(points),
    }


@sync_to_async
def _stored(job) -> list[list]:
    return [
        [s, v]
        for s, v in MetricPoint.objects.filter(job=job, key="loss")
        .order_by("step")
        .values_list("step", "value")
    ]


def _chart(messages: list[dict]) -> dict:
    node = shutil.which("node")
    if node is None:
        pytest.skip("no Node.js to run the page's merge code")
    result = subprocess.run(
        [node, "-e", NODE_DRIVER, str(LIVE_POINTS_JS)],
        input=json.dumps(messages),
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    )
    return json.loads(result.stdout)


async def _drain(communicator) -> list[dict]:
    messages = []
    while not await communicator.receive_nothing(timeout=0.3):
        messages.append(await communicator.receive_json_from(timeout=5))
    return messages


@override_settings(CHANNEL_LAYERS=IN_MEMORY)
async def test_a_batch_overtaken_by_a_later_one_still_reaches_the_chart_once(job):
    # given: a viewer with a snapshot of step 1
    await sync_to_async(metric_points_ingest)(job=job, points=[PointIn("loss", 1, 9.0)])
    communicator = _communicator(job)
    assert (await communicator.connect())[0]
    snapshot = await communicator.receive_json_from(timeout=5)
    # two batches are stored, steps 2-3 first (lower ids), then steps 4-5
    earlier = await _store_unannounced(job, [2, 3])
    later = await _store_unannounced(job, [4, 5])
    assert earlier["last_id"] < later["first_id"]

    # when: their broadcasts arrive the other way round
    layer = get_channel_layer()
    await layer.group_send(job_group(job.pk), later)
    await layer.group_send(job_group(job.pk), earlier)
    messages = await _drain(communicator)
    await communicator.disconnect()

    # then: the socket forwarded both, and the chart holds every stored point once, by step
    forwarded = sorted(p["step"] for m in messages if m["type"] == "points" for p in m["points"])
    assert forwarded == [2, 3, 4, 5]
    chart = _chart([snapshot, *messages])
    assert chart["series"]["loss"] == await _stored(job) == [[1, 9.0], [2, 8.0], [3, 7.0], [4, 6.0], [5, 5.0]]


def test_the_page_merges_batches_in_any_order_and_counts_what_came_live():
    snapshot = {"type": "snapshot", "series": {"loss": [[1, 3.0, 0.0]]}, "last_id": 10, "job": {}}

    def batch(*points):
        return {
            "type": "points",
            "points": [{"id": i, "key": "loss", "step": s, "value": float(s), "t": 0.0} for i, s in points],
        }

    chart = _chart([snapshot, batch((15, 4), (16, 5)), batch((12, 2), (13, 3)), batch((13, 3))])

    assert [step for step, _ in chart["series"]["loss"]] == [1, 2, 3, 4, 5]
    assert chart["query"] == "after=10&seen=4&upto=16"


@override_settings(CHANNEL_LAYERS=IN_MEMORY)
async def test_a_reconnect_gets_a_batch_that_was_lost_with_the_connection(job):
    # given: a viewer got step 1 in its snapshot and steps 4-5 live; steps 2-3, stored earlier, were
    # on their way when the connection dropped
    await sync_to_async(metric_points_ingest)(job=job, points=[PointIn("loss", 1, 9.0)])
    first = _communicator(job)
    assert (await first.connect())[0]
    snapshot = await first.receive_json_from(timeout=5)
    await _store_unannounced(job, [2, 3])
    later = await _store_unannounced(job, [4, 5])
    await get_channel_layer().group_send(job_group(job.pk), later)
    live = await _drain(first)
    await first.disconnect()
    before = _chart([snapshot, *live])
    assert [s for s, _ in before["series"]["loss"]] == [1, 4, 5]

    # when: it reconnects with the query the page sends
    second = _communicator(job, before["query"])
    assert (await second.connect())[0]
    resumed = await second.receive_json_from(timeout=5)
    await second.disconnect()

    # then: the snapshot has the lost steps, and the chart every stored point once
    assert [row[0] for row in resumed["series"]["loss"]] == [2, 3, 4, 5]
    assert _chart([snapshot, *live, resumed])["series"]["loss"] == await _stored(job)


@override_settings(CHANNEL_LAYERS=IN_MEMORY)
async def test_a_reconnect_that_missed_nothing_gets_only_what_is_newer(job):
    await sync_to_async(metric_points_ingest)(job=job, points=[PointIn("loss", 1, 9.0)])
    first = _communicator(job)
    assert (await first.connect())[0]
    snapshot = await first.receive_json_from(timeout=5)
    await sync_to_async(metric_points_ingest)(
        job=job, points=[PointIn("loss", 2, 8.0), PointIn("loss", 3, 7.0)]
    )
    live = await _drain(first)
    await first.disconnect()
    await sync_to_async(metric_points_ingest)(job=job, points=[PointIn("loss", 4, 6.0)])

    second = _communicator(job, _chart([snapshot, *live])["query"])
    assert (await second.connect())[0]
    resumed = await second.receive_json_from(timeout=5)
    await second.disconnect()

    assert [row[0] for row in resumed["series"]["loss"]] == [4]
