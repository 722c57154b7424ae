"""Websocket admission (issue 17 item 13): the Origin check compares scheme, host AND port with the site's
own origin (t4dm_site/ws_auth.py), and bad bearer tokens on a websocket connect count in the same
limiter as the HTTP APIs (t4dm_site/ratelimit.py): past the limit such a connect is closed (4429), while
a valid token from the same address still connects."""

from __future__ import annotations

from urllib.parse import urlparse

import pytest
from asgiref.sync import sync_to_async
from channels.testing import WebsocketCommunicator
from channels.testing.application import ApplicationCommunicator
from django.db import connections
from django.test import override_settings

from experiments.models import TrainingJob
from t4dm_site.asgi import application

pytestmark = pytest.mark.django_db(transaction=True)

IN_MEMORY = {"default": {"BACKEND": "channels.layers.InMemoryChannelLayer"}}
BAD_TOKEN = "t4dm_guessguessguessguessguessguessguessgues"


class ClientCommunicator(WebsocketCommunicator):
    """A WebsocketCommunicator whose scope carries the client address, as daphne's does."""

    def __init__(self, path: str, headers: list, client: tuple[str, int] = ("203.0.113.7", 40000)):
        parsed = urlparse(path)
        self.scope = {
            "type": "websocket",
            "path": parsed.path,
            "query_string": parsed.query.encode(),
            "headers": headers,
            "subprotocols": [],
            "client": list(client),
        }
        ApplicationCommunicator.__init__(self, application, self.scope)
        self.response_headers = None


@pytest.fixture
def job(demo_config):
    return TrainingJob.objects.create(
        owner=demo_config.owner, config=demo_config, experiment=demo_config.experiment
    )


def _connect(job, *, host: str, origin: str | None, token: str | None, extra_headers=(), **extra):
    headers = [(b"host", host.encode()), *extra_headers]
    if origin is not None:
        headers.append((b"origin", origin.encode()))
    if token:
        headers.append((b"authorization", f"Bearer {token}".encode()))
    return ClientCommunicator(f"/ws/jobs/{job.public_id}/", headers, **extra)


async def _outcome(communicator) -> tuple[bool, int | None]:
    connected, code = await communicator.connect(timeout=30)  # a busy CI machine
    await communicator.disconnect(timeout=30)
    return connected, (None if connected else code)


@override_settings(CHANNEL_LAYERS=IN_MEMORY)
async def test_the_origin_must_match_scheme_host_and_port(job, settings):
    token = job.owner.raw_token
    site = "127.0.0.1:8000"
    # The site's own origin connects.
    assert (await _outcome(_connect(job, host=site, origin="http://127.0.0.1:8000", token=token)))[0]
    # Another port of the same host is another origin (any local web page could otherwise connect).
    for origin in (
        "http://127.0.0.1:9999",
        "http://127.0.0.1",
        "https://127.0.0.1:8000",
        "http://localhost:8000",
    ):
        connected, code = await _outcome(_connect(job, host=site, origin=origin, token=token))
        assert not connected and code != 4401, origin  # refused before authentication
    # No Origin, a garbage one, a Host outside ALLOWED_HOSTS: refused.
    assert not (await _outcome(_connect(job, host=site, origin=None, token=token)))[0]
    assert not (await _outcome(_connect(job, host=site, origin="http://127.0.0.1:99999", token=token)))[0]
    assert not (
        await _outcome(
            _connect(job, host="evil.example:8000", origin="http://evil.example:8000", token=token)
        )
    )[0]
    # Default ports are filled in: Host without a port is port 80 for http.
    assert (await _outcome(_connect(job, host="127.0.0.1", origin="http://127.0.0.1:80", token=token)))[0]
    # A trusted origin (T4DM_CSRF_TRUSTED_ORIGINS: a proxy that rewrites Host) must match its port too.
    settings.CSRF_TRUSTED_ORIGINS = ["https://t4dm.example.org"]
    assert (await _outcome(_connect(job, host=site, origin="https://t4dm.example.org", token=token)))[0]
    assert not (
        await _outcome(_connect(job, host=site, origin="https://t4dm.example.org:8443", token=token))
    )[0]
    assert not (await _outcome(_connect(job, host=site, origin="http://t4dm.example.org", token=token)))[0]


@override_settings(CHANNEL_LAYERS=IN_MEMORY)
async def test_wss_behind_the_tls_proxy_is_an_https_origin(job, settings):
    settings.SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
    settings.ALLOWED_HOSTS = ["t4dm.example.org"]
    token = job.owner.raw_token
    communicator = _connect(
        job,
        host="t4dm.example.org",
        origin="https://t4dm.example.org",
        token=token,
        extra_headers=[(b"x-forwarded-proto", b"https")],
    )
    assert (await _outcome(communicator))[0]
    plain = _connect(job, host="t4dm.example.org", origin="https://t4dm.example.org", token=token)
    assert not (await _outcome(plain))[0]  # the connection itself is http: an https page is another origin


@override_settings(CHANNEL_LAYERS=IN_MEMORY)
async def test_websocket_token_guesses_are_limited_but_a_valid_token_still_connects(job, settings, client):
    settings.TOKEN_RATE_LIMIT = 5
    origin = {"host": "127.0.0.1:8000", "origin": "http://127.0.0.1:8000"}
    for _ in range(5):
        connected, code = await _outcome(_connect(job, token=BAD_TOKEN, **origin))
        assert not connected and code == 4401  # an unknown token is anonymous: the consumer says 4401
    connected, code = await _outcome(_connect(job, token=BAD_TOKEN, **origin))
    assert not connected and code == 4429  # past the limit: refused by the limiter
    # The same limiter as the HTTP APIs: that address's bad tokens now get 429 there too ...
    response = await sync_to_async(client.get)(
        "/api/v1/jobs", headers={"Authorization": f"Bearer {BAD_TOKEN}"}, REMOTE_ADDR="203.0.113.7"
    )
    assert response.status_code == 429
    # ... while a valid token from the same address connects and gets its snapshot.
    communicator = _connect(job, token=job.owner.raw_token, **origin)
    assert (await communicator.connect(timeout=30))[0]
    snapshot = await communicator.receive_json_from(timeout=30)
    assert snapshot["type"] == "snapshot" and snapshot["job"]["job_id"] == job.public_id
    await communicator.disconnect(timeout=30)
    # Another address, with another prefix, is not refused by these failures.
    other = _connect(job, token="t4dm_another" + "x" * 32, client=("198.51.100.1", 1), **origin)
    assert (await _outcome(other)) == (False, 4401)
    await sync_to_async(connections.close_all)()


@override_settings(CHANNEL_LAYERS=IN_MEMORY)
async def test_http_failures_count_for_websocket_connects(job, settings, client):
    settings.TOKEN_RATE_LIMIT = 3
    for _ in range(4):
        await sync_to_async(client.get)(
            "/api/v1/jobs", headers={"Authorization": f"Bearer {BAD_TOKEN}"}, REMOTE_ADDR="203.0.113.7"
        )
    origin = {"host": "127.0.0.1:8000", "origin": "http://127.0.0.1:8000"}
    assert (await _outcome(_connect(job, token=BAD_TOKEN, **origin))) == (False, 4429)
    await sync_to_async(
        connections.close_all
    )()  # the request thread's (PostgreSQL: lets the test database go)
