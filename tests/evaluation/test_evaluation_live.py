"""Issue 18 item 1: the evaluation page's progress crosses processes through a persisted outbox read by
id (EvaluationUpdate), not HTTP polling.

The evaluation worker's status and progress changes publish EvaluationProgressed / EvaluationFinished;
a subscriber writes an outbox row in the transaction; the websocket /ws/evaluations/<id>/ sends the rows
after its cursor when woken, reads nothing while idle, and a viewer that reconnects with ?after=<id>
gets exactly what it missed. Access is the API's: another researcher's evaluation is refused.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from asgiref.sync import sync_to_async
from channels.testing import WebsocketCommunicator
from django.db.backends.utils import CursorWrapper
from django.test import override_settings

from experiments.evaluation.models import Evaluation, EvaluationStatus, EvaluationUpdate
from experiments.evaluation.services import evaluation_run
from experiments.evaluation.subscribers import evaluation_outbox
from t4dm_site.asgi import application
from t4dm_site.events import EvaluationProgressed

pytestmark = pytest.mark.django_db(transaction=True)

IN_MEMORY = {"default": {"BACKEND": "channels.layers.InMemoryChannelLayer"}}


@pytest.fixture
def evaluation(researcher, demo_config, tiny_model_dir):
    """A queued evaluation of the tiny model on the demo dataset's test split (a few rows)."""
    version = demo_config.dataset_version
    test_file = Path(version.path) / version.splits["test"]["file"]
    return Evaluation.objects.create(
        owner=researcher,
        model_path=str(tiny_model_dir),
        dataset_version=version,
        task_type="chat",
        requested_metrics=["perplexity"],
        params={"test_file": str(test_file), "max_samples": 4, "compare_to_base": False},
    )


def _communicator(evaluation, token: str, after: int | str | None = None) -> WebsocketCommunicator:
    headers = [(b"host", b"127.0.0.1"), (b"origin", b"http://127.0.0.1")]
    headers.append((b"authorization", f"Bearer {token}".encode()))
    query = "" if after is None else f"?after={after}"
    return WebsocketCommunicator(
        application, f"/ws/evaluations/{evaluation.public_id}/{query}", headers=headers
    )


def _count_evaluation_queries(monkeypatch) -> list[str]:
    """Every SQL statement that reads or writes the evaluation tables, from any thread."""
    seen: list[str] = []
    execute = CursorWrapper.execute

    def counting(self, sql, params=None):
        if "experiments_evaluation" in str(sql):
            seen.append(str(sql))
        return execute(self, sql, params)

    monkeypatch.setattr(CursorWrapper, "execute", counting)
    return seen


def test_the_worker_writes_an_outbox_row_per_status_and_progress_change(evaluation, settings, tiny_model_dir):
    settings.TINY_MODEL_DIR = str(tiny_model_dir)
    evaluation_run(evaluation=evaluation)
    evaluation.refresh_from_db()
    rows = list(EvaluationUpdate.objects.filter(evaluation=evaluation))
    kinds = [row.kind for row in rows]
    assert evaluation.status == EvaluationStatus.SUCCEEDED, evaluation.error
    assert kinds[0] == "evaluation.progress" and rows[0].payload["status"] == "running"
    assert kinds[-1] == "evaluation.completed" and rows[-1].payload["status"] == "succeeded"
    progress = [row.payload["progress"] for row in rows[1:-1]]
    assert len(progress) >= 3 and progress == sorted(progress) and progress[-1] == 1.0
    assert rows[1].payload["progress_message"].startswith("loading ")
    # the worker's server path never leaves the server (as in GET /api/v1/evaluations/<id>)
    assert evaluation.model_path not in rows[1].payload["progress_message"]
    assert set(rows[-1].payload) == {
        "evaluation_id",
        "status",
        "progress",
        "progress_message",
        "error",
        "finished_at",
    }


@override_settings(CHANNEL_LAYERS=IN_MEMORY, WS_RECHECK_SECONDS=60, WS_EVALUATION_FALLBACK_SECONDS=60)
async def test_an_idle_socket_reads_nothing_and_progress_arrives_with_its_cursor(
    evaluation, researcher, monkeypatch
):
    communicator = _communicator(evaluation, researcher.raw_token)
    assert (await communicator.connect())[0]
    first = await communicator.receive_json_from(timeout=5)
    assert first == {
        "type": "evaluation",
        "id": 0,
        "evaluation": {
            "evaluation_id": evaluation.public_id,
            "status": "queued",
            "progress": 0.0,
            "progress_message": "",
            "error": "",
            "finished_at": None,
        },
    }
    await communicator.send_json_to({"type": "ping"})  # answered once connect() has finished
    assert (await communicator.receive_json_from(timeout=5))["type"] == "pong"

    queries = _count_evaluation_queries(monkeypatch)
    assert await communicator.receive_nothing(timeout=2.5)
    assert queries == []  # the page used to GET /api/v1/evaluations/<id> every second

    await sync_to_async(evaluation_run)(evaluation=evaluation)
    # the fallback read is a minute away: these come from the group wake-up after each commit
    rows = await sync_to_async(lambda: list(EvaluationUpdate.objects.filter(evaluation=evaluation)))()
    messages = [await communicator.receive_json_from(timeout=5) for _ in rows]
    assert [m["id"] for m in messages] == [row.pk for row in rows]
    assert [m["evaluation"] for m in messages] == [row.payload for row in rows]
    assert messages[0]["evaluation"]["status"] == "running"
    assert any(0 < m["evaluation"]["progress"] < 1 for m in messages)
    assert messages[-1]["evaluation"]["status"] == "succeeded"
    assert await communicator.receive_nothing(timeout=0.5)
    await communicator.disconnect()


@override_settings(CHANNEL_LAYERS=IN_MEMORY, WS_EVALUATION_FALLBACK_SECONDS=60)
async def test_a_reconnect_with_its_cursor_gets_exactly_what_it_missed(evaluation, researcher):
    communicator = _communicator(evaluation, researcher.raw_token)
    assert (await communicator.connect())[0]
    cursor = (await communicator.receive_json_from(timeout=5))["id"]
    await communicator.disconnect()

    def worker_progress() -> list[EvaluationUpdate]:
        # What the worker commits while the viewer is away: running, then two progress reports.
        evaluation.mark_running()
        evaluation_outbox(EvaluationProgressed(evaluation_pk=evaluation.pk, status="running"))
        for fraction in (0.25, 0.5):
            evaluation.record_progress(fraction=fraction, message=f"at {fraction}")
            evaluation_outbox(EvaluationProgressed(evaluation_pk=evaluation.pk, status="running"))
        return list(EvaluationUpdate.objects.filter(evaluation=evaluation))

    missed = await sync_to_async(worker_progress)()
    assert len(missed) == 3

    again = _communicator(evaluation, researcher.raw_token, after=cursor)
    assert (await again.connect())[0]
    got = [await again.receive_json_from(timeout=5) for _ in range(3)]
    assert [m["id"] for m in got] == [row.pk for row in missed]
    assert [m["evaluation"]["progress"] for m in got] == [0.0, 0.25, 0.5]
    assert await again.receive_nothing(timeout=0.5)  # nothing twice, no snapshot on top
    await again.disconnect()

    latest = _communicator(evaluation, researcher.raw_token, after=missed[1].pk)
    assert (await latest.connect())[0]
    assert (await latest.receive_json_from(timeout=5))["id"] == missed[2].pk
    assert await latest.receive_nothing(timeout=0.5)
    await latest.disconnect()

    bad = _communicator(evaluation, researcher.raw_token, after="x")
    connected, code = await bad.connect()
    assert not connected and code == 4404


@override_settings(CHANNEL_LAYERS=IN_MEMORY, WS_EVALUATION_FALLBACK_SECONDS=0.3)
async def test_progress_committed_by_the_worker_process_arrives_at_the_fallback_read(evaluation, researcher):
    """The in-memory layer cannot carry the worker process's wake-up: the row alone must reach the viewer."""
    communicator = _communicator(evaluation, researcher.raw_token)
    assert (await communicator.connect())[0]
    assert (await communicator.receive_json_from(timeout=5))["id"] == 0

    def worker_process_change() -> int:
        evaluation.mark_running()
        evaluation.record_progress(fraction=0.4, message="scoring")
        evaluation_outbox(EvaluationProgressed(evaluation_pk=evaluation.pk, status="running"))
        return EvaluationUpdate.objects.get(evaluation=evaluation).pk

    row_id = await sync_to_async(worker_process_change)()
    message = await communicator.receive_json_from(timeout=3)
    assert message["id"] == row_id and message["evaluation"]["progress"] == 0.4
    await communicator.disconnect()


@override_settings(CHANNEL_LAYERS=IN_MEMORY)
async def test_another_researcher_and_a_stranger_are_refused(evaluation, make_user):
    other = await sync_to_async(make_user)("otto")
    connected, code = await _communicator(evaluation, other.raw_token).connect()
    assert not connected and code == 4404
    viewer = await sync_to_async(make_user)("vera", role="evaluator")
    connected, code = await _communicator(evaluation, viewer.raw_token).connect()
    assert not connected and code == 4404
    connected, code = await _communicator(evaluation, "not-a-token").connect()
    assert not connected and code in (4401, 4403)
