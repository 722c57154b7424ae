"""Issue 17 item 4: open websockets do not outlive revocation.

A job stream closes (4401: the credential is gone, 4403: the access is gone) within a few re-check
intervals of its API token being revoked, its user deactivated, its session logged out or its role
taken away, and sends nothing more; the playground generates nothing for a deactivated user.
"""

from __future__ import annotations

import asyncio
import json
import time

import pytest
from asgiref.sync import sync_to_async
from channels.testing import WebsocketCommunicator
from django.test import override_settings

from experiments.ingest import PointIn, metric_points_ingest
from experiments.models import TrainingJob
from t4dm_site.asgi import application
from tests.models_registry.conftest import make_config, succeeded_job, trained_final  # noqa: F401

pytestmark = pytest.mark.django_db(transaction=True)

IN_MEMORY = {"default": {"BACKEND": "channels.layers.InMemoryChannelLayer"}}
RECHECK = 0.2


@pytest.fixture(autouse=True)
def _fast_rechecks(settings):
    settings.WS_RECHECK_SECONDS = RECHECK


@pytest.fixture
def job(demo_config):
    return TrainingJob.objects.create(
        owner=demo_config.owner, config=demo_config, experiment=demo_config.experiment
    )


def _headers(token: str | None = None, cookie: str | None = None) -> list[tuple[bytes, bytes]]:
    headers = [(b"host", b"127.0.0.1"), (b"origin", b"http://127.0.0.1")]
    if token:
        headers.append((b"authorization", f"Bearer {token}".encode()))
    if cookie:
        headers.append((b"cookie", cookie.encode()))
    return headers


async def _open_job_stream(job, **credentials) -> WebsocketCommunicator:
    communicator = WebsocketCommunicator(
        application, f"/ws/jobs/{job.public_id}/", headers=_headers(**credentials)
    )
    connected, _ = await communicator.connect()
    assert connected
    assert (await communicator.receive_json_from(timeout=5))["type"] == "snapshot"
    # It is live: a point ingested now arrives.
    await sync_to_async(metric_points_ingest)(job=job, points=[PointIn("loss", 1, 3.0)])
    assert (await communicator.receive_json_from(timeout=5))["type"] == "points"
    return communicator


async def _closes_with(communicator: WebsocketCommunicator, job, code: int) -> None:
    """The socket closes with `code` soon, and a point ingested meanwhile is never sent."""
    await sync_to_async(metric_points_ingest)(job=job, points=[PointIn("loss", 2, 2.0)])
    started = time.monotonic()
    sent = []
    while True:
        output = await communicator.receive_output(timeout=10 * RECHECK + 5)
        if output["type"] == "websocket.close":
            break
        sent.append(json.loads(output["text"]))
    assert output["code"] == code
    assert time.monotonic() - started < 10 * RECHECK + 3
    # What was still forwarded before the check noticed is at most that one point; nothing after it.
    await sync_to_async(metric_points_ingest)(job=job, points=[PointIn("loss", 3, 1.0)])
    await asyncio.sleep(3 * RECHECK)
    assert await communicator.receive_nothing(timeout=0.3)
    assert all(m["type"] == "points" and [p["step"] for p in m["points"]] == [2] for m in sent), sent


@override_settings(CHANNEL_LAYERS=IN_MEMORY)
async def test_a_revoked_api_token_closes_the_job_stream(job):
    from t4dm_site.models import ApiToken, hash_token

    owner = job.owner
    communicator = await _open_job_stream(job, token=owner.raw_token)
    token = await sync_to_async(ApiToken.objects.get)(token_hash=hash_token(owner.raw_token))
    await sync_to_async(token.revoke)()
    await _closes_with(communicator, job, 4401)


@override_settings(CHANNEL_LAYERS=IN_MEMORY)
async def test_a_deactivated_user_loses_the_job_stream(job):
    communicator = await _open_job_stream(job, token=job.owner.raw_token)
    owner = job.owner
    owner.is_active = False
    await sync_to_async(owner.save)(update_fields=["is_active"])
    await _closes_with(communicator, job, 4401)


@override_settings(CHANNEL_LAYERS=IN_MEMORY)
async def test_a_user_whose_role_is_taken_away_loses_the_job_stream(job):
    communicator = await _open_job_stream(job, token=job.owner.raw_token)
    await sync_to_async(job.owner.groups.clear)()
    await _closes_with(communicator, job, 4403)


@override_settings(CHANNEL_LAYERS=IN_MEMORY)
async def test_a_logged_out_browser_session_loses_the_job_stream(job):
    from django.test import Client

    browser = Client()
    await sync_to_async(browser.force_login)(job.owner)
    cookie = f"sessionid={browser.cookies['sessionid'].value}"
    communicator = await _open_job_stream(job, cookie=cookie)
    await sync_to_async(browser.logout)()
    await _closes_with(communicator, job, 4401)


async def test_the_playground_generates_nothing_for_a_deactivated_user(
    make_config,  # noqa: F811
    succeeded_job,  # noqa: F811
    researcher,
):
    from models_registry.services import model_version_auto_create

    version = await sync_to_async(lambda: model_version_auto_create(job=succeeded_job(make_config())))()
    communicator = WebsocketCommunicator(
        application,
        f"/ws/playground/{version.model_id}/{version.version}/",
        headers=_headers(researcher.raw_token),
    )
    assert (await communicator.connect())[0]
    assert (await communicator.receive_json_from(timeout=10))["type"] == "ready"
    researcher.is_active = False
    await sync_to_async(researcher.save)(update_fields=["is_active"])
    # At once (before the next periodic check), a generation request is refused and the socket closed.
    await communicator.send_json_to(
        {"type": "generate", "messages": [{"role": "user", "content": "hi"}], "params": {"max_new_tokens": 8}}
    )
    output = await communicator.receive_output(timeout=10)
    assert output == {"type": "websocket.close", "code": 4401}, output
