"""The lean ingest path's gathered broadcasts (experiments/tracking/live.py `PointsCoalescer`): batches of
one job within the window reach the channel layer as one message, ids ascending, nothing lost."""

from __future__ import annotations

import asyncio
import json

from channels.layers import InMemoryChannelLayer

from experiments.tracking import live


def _message(first: int, count: int) -> dict:
    points = [
        {"id": i, "key": "loss", "step": i, "value": 1.0, "t": 0.0} for i in range(first, first + count)
    ]
    return {
        "type": "job.points",
        "first_id": first,
        "last_id": first + count - 1,
        "points_json": json.dumps(points),
    }


def test_merge_keeps_every_point_in_id_order():
    merged = live.merge_points([_message(5, 2), _message(1, 3), {**_message(9, 1), "points_json": "[]"}])
    assert (merged["first_id"], merged["last_id"]) == (1, 9)
    assert [p["id"] for p in json.loads(merged["points_json"])] == [1, 2, 3, 5, 6]


def test_merge_with_a_large_batch_is_one_range_without_points():
    # A large batch is broadcast as its id range alone; gathered with others, the viewer reads them all.
    large = {"type": "job.points", "first_id": 3, "last_id": 4}
    merged = live.merge_points([_message(5, 2), large, _message(1, 2)])
    assert merged == {"type": "job.points", "first_id": 1, "last_id": 6}


def test_batches_within_the_window_go_out_as_one_message_per_job(monkeypatch):
    layer = InMemoryChannelLayer()
    monkeypatch.setattr(live, "get_channel_layer", lambda: layer)

    async def scenario():
        channels = {}
        for job in (1, 2):
            channels[job] = await layer.new_channel()
            await layer.group_add(live.job_group(job), channels[job])
        coalescer = live.PointsCoalescer(0.05)
        coalescer.add(1, _message(1, 2))
        coalescer.add(2, _message(3, 1))
        coalescer.add(1, _message(4, 2))
        first = await asyncio.wait_for(layer.receive(channels[1]), 2)
        other = await asyncio.wait_for(layer.receive(channels[2]), 2)
        coalescer.add(1, _message(6, 1))  # after the window: a message of its own
        later = await asyncio.wait_for(layer.receive(channels[1]), 2)
        return first, other, later

    first, other, later = asyncio.run(scenario())
    assert [p["id"] for p in json.loads(first["points_json"])] == [1, 2, 4, 5]
    assert (first["first_id"], first["last_id"]) == (1, 5)
    assert [p["id"] for p in json.loads(other["points_json"])] == [3]
    assert [p["id"] for p in json.loads(later["points_json"])] == [6]
