"""The live workflow websocket: the workflow on connect, then each change of a step; others refused.

Steps change through the workflow service (it publishes WorkflowChanged, whose subscribers write the
outbox the socket reads); a step changed through the model directly would reach no viewer."""

from __future__ import annotations

import pytest
from asgiref.sync import sync_to_async
from channels.testing import WebsocketCommunicator
from django.test import override_settings

from experiments.workflows.models import STEP_ORDER, Workflow, WorkflowStep
from experiments.workflows.services import workflow_step_run
from t4dm_site.asgi import application

pytestmark = pytest.mark.django_db(transaction=True)

IN_MEMORY = {"default": {"BACKEND": "channels.layers.InMemoryChannelLayer"}}


@pytest.fixture
def workflow(researcher):
    # Created directly: what the consumer shows is under test here, not running the steps.
    created = Workflow.objects.create(owner=researcher, name="live", input_spec={"source": "knowledge"})
    WorkflowStep.objects.bulk_create(
        WorkflowStep(workflow=created, name=name, position=i) for i, name in enumerate(STEP_ORDER)
    )
    created.mark_running()
    return created


def _run_failing_step(workflow) -> None:
    """Run the validate step through the service: it has no dataset to validate, so it goes running,
    then failed, and the workflow fails (three outbox rows)."""
    workflow_step_run(step_pk=workflow.steps.get(name="validate").pk)


def _communicator(workflow, token: str | None) -> WebsocketCommunicator:
    headers = [(b"host", b"127.0.0.1"), (b"origin", b"http://127.0.0.1")]
    if token:
        headers.append((b"authorization", f"Bearer {token}".encode()))
    return WebsocketCommunicator(application, f"/ws/workflows/{workflow.public_id}/", headers=headers)


@override_settings(CHANNEL_LAYERS=IN_MEMORY)
async def test_anonymous_and_other_users_are_refused(workflow, make_user):
    connected, code = await _communicator(workflow, token=None).connect()
    assert not connected and code == 4401
    other = await sync_to_async(make_user)("oscar")
    connected, code = await _communicator(workflow, token=other.raw_token).connect()
    assert not connected and code == 4404


@override_settings(CHANNEL_LAYERS=IN_MEMORY)
async def test_the_workflow_then_each_step_change(workflow, researcher):
    communicator = _communicator(workflow, token=researcher.raw_token)
    assert (await communicator.connect())[0]

    first = await communicator.receive_json_from(timeout=5)
    assert first["type"] == "workflow" and first["workflow"]["workflow_id"] == workflow.public_id
    assert {s["status"] for s in first["workflow"]["steps"]} == {"pending"}

    assert first["id"] == 0  # the cursor: no update yet

    await sync_to_async(_run_failing_step)(workflow)
    running, step_failed, failed = [await communicator.receive_json_from(timeout=5) for _ in range(3)]
    assert (
        running["workflow"]["steps"][1]["status"] == "running" and running["workflow"]["status"] == "running"
    )
    assert step_failed["workflow"]["steps"][1]["status"] == "failed"
    assert failed["workflow"]["status"] == "failed" and failed["workflow"]["error"].startswith(
        "validate failed"
    )
    assert 0 < running["id"] < step_failed["id"] < failed["id"]
    # nothing else changed: no message for a second or more
    assert await communicator.receive_nothing(timeout=1.5)
    await communicator.disconnect()


@override_settings(CHANNEL_LAYERS=IN_MEMORY, WS_RECHECK_SECONDS=0.2)
async def test_a_revoked_token_closes_the_workflow_stream(workflow, researcher):
    """Issue 17 item 4: the workflow socket does not outlive its API token; no step change is sent after."""
    from t4dm_site.models import ApiToken, hash_token

    communicator = _communicator(workflow, token=researcher.raw_token)
    assert (await communicator.connect())[0]
    assert (await communicator.receive_json_from(timeout=5))["type"] == "workflow"
    token = await sync_to_async(ApiToken.objects.get)(token_hash=hash_token(researcher.raw_token))
    await sync_to_async(token.revoke)()
    output = await communicator.receive_output(timeout=5)
    assert output == {"type": "websocket.close", "code": 4401}, output
    await sync_to_async(_run_failing_step)(workflow)
    assert await communicator.receive_nothing(timeout=1.5)


@override_settings(CHANNEL_LAYERS=IN_MEMORY, WS_RECHECK_SECONDS=0.2)
async def test_a_role_taken_away_closes_the_workflow_stream(workflow, researcher):
    communicator = _communicator(workflow, token=researcher.raw_token)
    assert (await communicator.connect())[0]
    assert (await communicator.receive_json_from(timeout=5))["type"] == "workflow"
    await sync_to_async(researcher.groups.clear)()
    output = await communicator.receive_output(timeout=5)
    assert output == {"type": "websocket.close", "code": 4403}, output
