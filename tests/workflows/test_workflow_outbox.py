"""Issue 18 item 1: workflow changes cross processes through a persisted outbox read by id.

Each change the workflow service makes writes a WorkflowUpdate row in its transaction; the websocket
sends the rows after its cursor when the channel layer wakes it, reads nothing while idle, and a viewer
that reconnects with ?after=<id> gets exactly what it missed. With the in-memory layer (which cannot
carry a worker process's wake-up) a slow fallback read still delivers the change.
"""

from __future__ import annotations

import pytest
from asgiref.sync import sync_to_async
from channels.testing import WebsocketCommunicator
from django.db.backends.utils import CursorWrapper
from django.test import override_settings

from experiments.integrations.models import WebhookDelivery, WebhookSubscription
from experiments.workflows.models import STEP_ORDER, Workflow, WorkflowStep, WorkflowUpdate
from experiments.workflows.services import workflow_retry, workflow_step_run
from experiments.workflows.subscribers import workflow_outbox
from t4dm_site.asgi import application
from t4dm_site.events import WorkflowChanged

pytestmark = pytest.mark.django_db(transaction=True)

IN_MEMORY = {"default": {"BACKEND": "channels.layers.InMemoryChannelLayer"}}


@pytest.fixture
def workflow(researcher):
    created = Workflow.objects.create(owner=researcher, name="live", input_spec={"source": "knowledge"})
    WorkflowStep.objects.bulk_create(
        WorkflowStep(workflow=created, name=name, position=i) for i, name in enumerate(STEP_ORDER)
    )
    created.mark_running()
    return created


def _communicator(workflow, token: str, after: int | None = None) -> WebsocketCommunicator:
    headers = [(b"host", b"127.0.0.1"), (b"origin", b"http://127.0.0.1")]
    headers.append((b"authorization", f"Bearer {token}".encode()))
    query = "" if after is None else f"?after={after}"
    return WebsocketCommunicator(application, f"/ws/workflows/{workflow.public_id}/{query}", headers=headers)


def _run_failing_step(workflow) -> None:
    """The validate step through the service: no dataset to validate, so running → failed, workflow failed."""
    workflow_step_run(step_pk=workflow.steps.get(name="validate").pk)


def _kinds(workflow) -> list[str]:
    return list(WorkflowUpdate.objects.filter(workflow=workflow).values_list("kind", flat=True))


def test_every_step_transition_of_the_service_writes_an_outbox_row(workflow):
    _run_failing_step(workflow)
    assert _kinds(workflow) == ["workflow.step_running", "workflow.step_failed", "workflow.failed"]
    rows = list(WorkflowUpdate.objects.filter(workflow=workflow))
    # the row holds the workflow as the API shows it at that change
    assert rows[0].payload["steps"][1]["status"] == "running"
    assert rows[-1].payload["status"] == "failed" and rows[-1].payload["steps"][1]["status"] == "failed"

    workflow_retry(workflow=workflow)  # the step goes back to pending and the workflow runs again
    assert _kinds(workflow)[-1] == "workflow.running"
    assert WorkflowUpdate.objects.filter(workflow=workflow).last().payload["steps"][1]["status"] == "pending"


def test_outbox_only_changes_send_no_webhook(workflow, researcher):
    WebhookSubscription.objects.create(
        url="https://example.com/hook", secret="s" * 32, event_types=["workflow.*"], created_by=researcher
    )
    _run_failing_step(workflow)
    sent = list(WebhookDelivery.objects.order_by("id").values_list("event_type", flat=True))
    assert sent == ["workflow.step_failed", "workflow.failed"]  # no workflow.step_running webhook


def _count_workflow_queries(monkeypatch) -> list[str]:
    """Every SQL statement that reads or writes the workflow tables, from any thread."""
    seen: list[str] = []
    execute = CursorWrapper.execute

    def counting(self, sql, params=None):
        if "workflows_" in str(sql):
            seen.append(str(sql))
        return execute(self, sql, params)

    monkeypatch.setattr(CursorWrapper, "execute", counting)
    return seen


@override_settings(CHANNEL_LAYERS=IN_MEMORY, WS_RECHECK_SECONDS=60, WS_WORKFLOW_FALLBACK_SECONDS=60)
async def test_an_idle_socket_reads_nothing_and_a_change_arrives_when_woken(
    workflow, researcher, monkeypatch
):
    communicator = _communicator(workflow, researcher.raw_token)
    assert (await communicator.connect())[0]
    first = await communicator.receive_json_from(timeout=5)
    assert first["type"] == "workflow" and first["id"] == 0
    await communicator.send_json_to({"type": "ping"})  # answered once connect() has finished
    assert (await communicator.receive_json_from(timeout=5))["type"] == "pong"

    queries = _count_workflow_queries(monkeypatch)
    assert await communicator.receive_nothing(timeout=2.5)
    assert queries == []  # the polling consumer read the workflow and its steps every second

    await sync_to_async(_run_failing_step)(workflow)
    # the fallback read is a minute away: these come from the group wake-up after each commit
    messages = [await communicator.receive_json_from(timeout=2) for _ in range(3)]
    ids = [m["id"] for m in messages]
    assert ids == sorted(ids) and messages[-1]["workflow"]["status"] == "failed"
    assert await communicator.receive_nothing(timeout=0.5)
    await communicator.disconnect()


@override_settings(CHANNEL_LAYERS=IN_MEMORY, WS_WORKFLOW_FALLBACK_SECONDS=60)
async def test_a_reconnect_with_its_cursor_gets_exactly_what_it_missed(workflow, researcher):
    communicator = _communicator(workflow, researcher.raw_token)
    assert (await communicator.connect())[0]
    cursor = (await communicator.receive_json_from(timeout=5))["id"]
    await communicator.disconnect()

    await sync_to_async(_run_failing_step)(workflow)  # while the viewer is away
    missed = await sync_to_async(lambda: list(WorkflowUpdate.objects.filter(workflow=workflow)))()
    assert len(missed) == 3

    again = _communicator(workflow, researcher.raw_token, after=cursor)
    assert (await again.connect())[0]
    got = [await again.receive_json_from(timeout=5) for _ in range(3)]
    assert [m["id"] for m in got] == [row.pk for row in missed]
    assert [m["workflow"] for m in got] == [row.payload for row in missed]
    assert await again.receive_nothing(timeout=0.5)  # nothing twice, no snapshot on top
    await again.disconnect()

    latest = _communicator(workflow, researcher.raw_token, after=missed[1].pk)
    assert (await latest.connect())[0]
    assert (await latest.receive_json_from(timeout=5))["id"] == missed[2].pk
    assert await latest.receive_nothing(timeout=0.5)
    await latest.disconnect()

    bad = _communicator(workflow, researcher.raw_token, after="x")  # type: ignore[arg-type]
    connected, code = await bad.connect()
    assert not connected and code == 4404


@override_settings(CHANNEL_LAYERS=IN_MEMORY, WS_WORKFLOW_FALLBACK_SECONDS=0.3)
async def test_a_change_committed_by_another_process_arrives_at_the_fallback_read(workflow, researcher):
    """The in-memory layer cannot carry a worker process's wake-up: the row alone must reach the viewer."""
    communicator = _communicator(workflow, researcher.raw_token)
    assert (await communicator.connect())[0]
    assert (await communicator.receive_json_from(timeout=5))["id"] == 0

    def worker_process_change() -> int:
        # What a step change in a worker process commits here: the step and its outbox row (the wake-up
        # it sends after commit goes to that process's own in-memory layer, which reaches nobody here).
        step = workflow.steps.get(name="prepare")
        step.mark_running()
        workflow_outbox(
            WorkflowChanged(workflow_pk=workflow.pk, webhook_type="workflow.step_running", step_pk=step.pk)
        )
        return WorkflowUpdate.objects.get(workflow=workflow).pk

    row_id = await sync_to_async(worker_process_change)()
    message = await communicator.receive_json_from(timeout=3)
    assert message["id"] == row_id and message["workflow"]["steps"][0]["status"] == "running"
    await communicator.disconnect()


@override_settings(CHANNEL_LAYERS=IN_MEMORY, WS_RECHECK_SECONDS=60, WS_WORKFLOW_FALLBACK_SECONDS=0.25)
async def test_the_in_memory_layer_watcher_reads_once_per_process_not_per_viewer(
    workflow, researcher, monkeypatch
):
    viewers = [_communicator(workflow, researcher.raw_token) for _ in range(4)]
    for viewer in viewers:
        assert (await viewer.connect())[0]
        assert (await viewer.receive_json_from(timeout=5))["type"] == "workflow"
        await viewer.send_json_to({"type": "ping"})
        assert (await viewer.receive_json_from(timeout=5))["type"] == "pong"

    queries = _count_workflow_queries(monkeypatch)
    assert await viewers[0].receive_nothing(timeout=2.0)
    # one watcher: about 2.0 / 0.25 = 8 reads of the outbox's new ids; one loop per viewer would be 32
    assert 4 <= len(queries) <= 10, len(queries)
    assert all('FROM "workflows_workflowupdate"' in sql and 'workflow_id" =' not in sql for sql in queries)
    for viewer in viewers:
        await viewer.disconnect()
