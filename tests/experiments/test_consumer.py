from __future__ import annotations

import pytest
from channels.testing import WebsocketCommunicator
from django.test import override_settings

from experiments.ingest import PointIn, metric_points_ingest
from experiments.models import TrainingJob
from t4dm_site.asgi import application

pytestmark = pytest.mark.django_db(transaction=True)

IN_MEMORY = {"default": {"BACKEND": "channels.layers.InMemoryChannelLayer"}}


@pytest.fixture
def job(demo_config):
    # Enqueueing is not what these tests look at; the job only needs to exist.
    return TrainingJob.objects.create(
        owner=demo_config.owner, config=demo_config, experiment=demo_config.experiment
    )


def _communicator(job, token: str | None, after: int = 0) -> WebsocketCommunicator:
    headers = [(b"host", b"127.0.0.1"), (b"origin", b"http://127.0.0.1")]
    if token:
        headers.append((b"authorization", f"Bearer {token}".encode()))
    return WebsocketCommunicator(application, f"/ws/jobs/{job.public_id}/?after={after}", headers=headers)


async def _ingest(job, points):
    from asgiref.sync import sync_to_async

    return await sync_to_async(metric_points_ingest)(job=job, points=points)


@override_settings(CHANNEL_LAYERS=IN_MEMORY)
async def test_an_anonymous_client_is_refused(job):
    communicator = _communicator(job, token=None)
    connected, code = await communicator.connect()
    assert not connected and code == 4401


@override_settings(CHANNEL_LAYERS=IN_MEMORY)
async def test_another_researcher_is_refused(job, make_user):
    from asgiref.sync import sync_to_async

    other = await sync_to_async(make_user)("oscar")
    connected, code = await _communicator(job, token=other.raw_token).connect()
    assert not connected and code == 4404


@override_settings(CHANNEL_LAYERS=IN_MEMORY)
async def test_snapshot_then_live_points_then_a_gapless_reconnect(job):
    token = job.owner.raw_token
    await _ingest(job, [PointIn("loss", 1, 3.0), PointIn("loss", 2, 2.5)])

    first = _communicator(job, token)
    assert (await first.connect())[0]
    snapshot = await first.receive_json_from(timeout=5)
    assert snapshot["type"] == "snapshot" and snapshot["job"]["job_id"] == job.public_id
    assert snapshot["series"]["loss"] == [
        [1, 3.0, pytest.approx(snapshot["series"]["loss"][0][2])],
        [2, 2.5, pytest.approx(snapshot["series"]["loss"][1][2])],
    ]
    await _ingest(job, [PointIn("loss", 3, 2.0)])
    live = await first.receive_json_from(timeout=5)
    assert live["type"] == "points" and [(p["key"], p["step"]) for p in live["points"]] == [("loss", 3)]
    last_id = live["last_id"]
    await first.disconnect()

    # While disconnected, two more points arrive; a duplicate retry of step 3 stores nothing.
    await _ingest(job, [PointIn("loss", 3, 2.0), PointIn("loss", 4, 1.5), PointIn("loss", 5, 1.2)])
    second = _communicator(job, token, after=last_id)
    assert (await second.connect())[0]
    resumed = await second.receive_json_from(timeout=5)
    assert [row[0] for row in resumed["series"]["loss"]] == [4, 5]
    await second.disconnect()


@override_settings(CHANNEL_LAYERS=IN_MEMORY, WS_MAX_POINTS_PER_SERIES=30)
async def test_a_long_series_is_downsampled_on_connect_and_keeps_spikes(job):
    points = [PointIn("loss", s, 1.0) for s in range(1, 1001)]
    points[500] = PointIn("loss", 501, 99.0)  # a spike must survive downsampling
    await _ingest(job, points)
    communicator = _communicator(job, job.owner.raw_token)
    await communicator.connect()
    snapshot = await communicator.receive_json_from(timeout=5)
    values = [v for _, v, _ in snapshot["series"]["loss"]]
    assert snapshot["downsampled"] is True and len(values) <= 30 and 99.0 in values
    assert snapshot["series"]["loss"][-1][0] == 1000
    await communicator.disconnect()


@override_settings(CHANNEL_LAYERS=IN_MEMORY)
async def test_a_broadcast_overlapping_the_snapshot_sends_only_the_new_points(job):
    # A batch committed while the snapshot was read arrives again by the group: nothing twice.
    import json

    from channels.layers import get_channel_layer

    from experiments.live import job_group

    await _ingest(job, [PointIn("loss", 1, 3.0), PointIn("loss", 2, 2.5)])
    communicator = _communicator(job, job.owner.raw_token)
    assert (await communicator.connect())[0]
    seen = (await communicator.receive_json_from(timeout=5))["last_id"]

    def batch(ids):
        points = [{"id": i, "key": "loss", "step": i, "value": 1.0, "t": 0.0} for i in ids]
        return {
            "type": "job.points",
            "first_id": ids[0],
            "last_id": ids[-1],
            "points_json": json.dumps(points),
        }

    layer = get_channel_layer()
    await layer.group_send(job_group(job.pk), batch([seen - 1, seen]))  # all seen: nothing sent
    await layer.group_send(job_group(job.pk), batch([seen, seen + 1, seen + 2]))  # overlaps
    await layer.group_send(job_group(job.pk), batch([seen + 3]))  # wholly new: forwarded as it is
    overlap = await communicator.receive_json_from(timeout=5)
    assert [p["id"] for p in overlap["points"]] == [seen + 1, seen + 2] and overlap["last_id"] == seen + 2
    fresh = await communicator.receive_json_from(timeout=5)
    assert [p["id"] for p in fresh["points"]] == [seen + 3] and fresh["last_id"] == seen + 3
    assert await communicator.receive_nothing(timeout=0.2)
    await communicator.disconnect()


@override_settings(CHANNEL_LAYERS=IN_MEMORY)
async def test_a_large_batch_reaches_the_open_page_read_from_its_id_range(job):
    # A batch over LIVE_INLINE_POINTS is broadcast without its points; the viewer reads them, exactly
    # once, and a range the snapshot partly had gives only the rest.
    from channels.layers import get_channel_layer

    from experiments.live import job_group
    from experiments.tracking.ingest import LIVE_INLINE_POINTS

    await _ingest(job, [PointIn("loss", 0, 3.0)])
    communicator = _communicator(job, job.owner.raw_token)
    assert (await communicator.connect())[0]
    seen = (await communicator.receive_json_from(timeout=5))["last_id"]
    values = [(s, 1.0 / s) for s in range(1, LIVE_INLINE_POINTS + 2)]
    await _ingest(job, [PointIn("loss", s, v) for s, v in values])
    live = await communicator.receive_json_from(timeout=5)
    assert [(p["step"], p["value"]) for p in live["points"]] == values
    ids = [p["id"] for p in live["points"]]
    assert ids == sorted(ids) and ids[0] > seen and live["last_id"] == ids[-1]
    await get_channel_layer().group_send(
        job_group(job.pk), {"type": "job.points", "first_id": seen - 5, "last_id": ids[1]}
    )  # the snapshot had everything up to `seen`
    again = await communicator.receive_json_from(timeout=5)
    assert [p["id"] for p in again["points"]] == ids[:2]
    assert await communicator.receive_nothing(timeout=0.2)
    await communicator.disconnect()


@override_settings(CHANNEL_LAYERS=IN_MEMORY)
async def test_a_saved_checkpoint_reaches_the_open_page(job):
    from asgiref.sync import sync_to_async

    from experiments.services import checkpoint_record

    communicator = _communicator(job, job.owner.raw_token)
    assert (await communicator.connect())[0]
    await communicator.receive_json_from(timeout=5)  # the snapshot
    await sync_to_async(checkpoint_record)(job=job, step=50, path="/tmp/ckpt-50", metrics={"loss": 1.25})
    messages = [await communicator.receive_json_from(timeout=5) for _ in range(2)]
    checkpoint = next(m["checkpoint"] for m in messages if m["type"] == "checkpoint")
    assert checkpoint == {
        "step": 50,
        "loss": 1.25,
        "val_loss": None,
        "model_path": f"{job.public_id}/step-50",
    }
    await communicator.disconnect()
