"""Issue 18 item 1: dataset task progress (augment, prepare) reaches the dataset page over a websocket
fed by a persisted outbox read by id (DatasetTaskUpdate), not 0.7 s HTTP polling."""

from __future__ import annotations

import pytest
from asgiref.sync import sync_to_async
from channels.testing import WebsocketCommunicator
from django.db.backends.utils import CursorWrapper
from django.test import override_settings

from datasets_app.models import DatasetTaskUpdate
from datasets_app.services import dataset_augment_request, dataset_prepare
from datasets_app.tasks import augment_dataset_task
from t4dm_site.asgi import application
from tests.datasets_app.conftest import distinct_chat_rows, jsonl

pytestmark = pytest.mark.django_db(transaction=True)

IN_MEMORY = {"default": {"BACKEND": "channels.layers.InMemoryChannelLayer"}}


@pytest.fixture
def task(researcher, artifact_root):
    version = dataset_prepare(
        owner=researcher, name="aug", content=jsonl(distinct_chat_rows(20)), task_type="chat"
    )
    return dataset_augment_request(
        owner=researcher, version=version, methods=["template_paraphrase", "noise"]
    )


def _communicator(task, token: str, after: int | str | None = None) -> WebsocketCommunicator:
    headers = [(b"host", b"127.0.0.1"), (b"origin", b"http://127.0.0.1")]
    headers.append((b"authorization", f"Bearer {token}".encode()))
    query = "" if after is None else f"?after={after}"
    return WebsocketCommunicator(application, f"/ws/dataset-tasks/{task.public_id}/{query}", headers=headers)


def test_the_worker_writes_an_outbox_row_per_change(task):
    augment_dataset_task(task.pk)  # what the worker on the datasets queue runs
    rows = list(DatasetTaskUpdate.objects.filter(task=task))
    assert rows[0].kind == "dataset_task.running" and rows[-1].kind == "dataset_task.succeeded"
    assert rows[-1].payload["result_version"] == 2 and rows[-1].payload["progress"] == 1.0
    assert rows[-1].payload["task_id"] == task.public_id


@override_settings(CHANNEL_LAYERS=IN_MEMORY, WS_RECHECK_SECONDS=60, WS_DATASET_TASK_FALLBACK_SECONDS=60)
async def test_an_idle_socket_reads_nothing_and_the_task_arrives_live(task, researcher, monkeypatch):
    communicator = _communicator(task, researcher.raw_token)
    assert (await communicator.connect())[0]
    first = await communicator.receive_json_from(timeout=5)
    assert first["type"] == "task" and first["id"] == 0 and first["task"]["status"] == "queued"
    await communicator.send_json_to({"type": "ping"})
    assert (await communicator.receive_json_from(timeout=5))["type"] == "pong"

    seen: list[str] = []
    execute = CursorWrapper.execute

    def counting(self, sql, params=None):
        if "datasets_app_datasettask" in str(sql):
            seen.append(str(sql))
        return execute(self, sql, params)

    monkeypatch.setattr(CursorWrapper, "execute", counting)
    assert await communicator.receive_nothing(timeout=2.5)
    assert seen == []  # the page used to GET /api/v1/datasets/tasks/<id> every 0.7 s

    await sync_to_async(augment_dataset_task)(task.pk)
    rows = await sync_to_async(lambda: list(DatasetTaskUpdate.objects.filter(task=task)))()
    messages = [await communicator.receive_json_from(timeout=5) for _ in rows]
    assert [m["id"] for m in messages] == [row.pk for row in rows]
    assert messages[-1]["task"]["status"] == "succeeded" and messages[-1]["task"]["result_version"] == 2
    assert await communicator.receive_nothing(timeout=0.5)
    await communicator.disconnect()

    again = _communicator(task, researcher.raw_token, after=rows[0].pk)  # reconnect: only what it missed
    assert (await again.connect())[0]
    got = [await again.receive_json_from(timeout=5) for _ in rows[1:]]
    assert [m["id"] for m in got] == [row.pk for row in rows[1:]]
    assert await again.receive_nothing(timeout=0.5)
    await again.disconnect()


@override_settings(CHANNEL_LAYERS=IN_MEMORY)
async def test_another_researcher_is_refused(task, make_user):
    other = await sync_to_async(make_user)("otto")
    connected, code = await _communicator(task, other.raw_token).connect()
    assert not connected and code == 4404
