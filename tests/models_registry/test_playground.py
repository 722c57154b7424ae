"""The playground websocket streams both sides' tokens; its page renders."""

from __future__ import annotations

import pytest
from channels.testing import WebsocketCommunicator

from t4dm_site.asgi import application

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def version(make_config, succeeded_job):
    from models_registry.services import model_version_auto_create

    return model_version_auto_create(job=succeeded_job(make_config()))


def _communicator(version, token: str | None) -> WebsocketCommunicator:
    headers = [(b"host", b"127.0.0.1"), (b"origin", b"http://127.0.0.1")]
    if token:
        headers.append((b"authorization", f"Bearer {token}".encode()))
    return WebsocketCommunicator(
        application, f"/ws/playground/{version.model_id}/{version.version}/", headers=headers
    )


async def test_tokens_of_both_sides_stream_then_done(version, researcher):
    from asgiref.sync import sync_to_async

    from models_registry.playground import generate, generation_params

    communicator = _communicator(version, researcher.raw_token)
    assert (await communicator.connect())[0]
    ready = await communicator.receive_json_from(timeout=10)
    assert ready == {"type": "ready", "base": "t4dm-tiny", "checkpoints": []}

    chat = [{"role": "user", "content": "What does T4DM stand for?"}]
    await communicator.send_json_to({"type": "generate", "messages": chat, "params": {"max_new_tokens": 12}})
    streamed: dict[str, list[str]] = {"version": [], "base": []}
    done: dict[str, dict] = {}
    while len(done) < 2:
        message = await communicator.receive_json_from(timeout=60)
        assert message["type"] in ("token", "done"), message
        if message["type"] == "token":
            assert message["side"] not in done, "a token after its side's done"
            streamed[message["side"]].append(message["text"])
        else:
            done[message["side"]] = message
    await communicator.disconnect()

    for side in ("version", "base"):
        assert len(streamed[side]) > 1
        assert done[side]["tokens"] == 12
        assert done[side]["text"].startswith("".join(streamed[side]))
    # greedy decoding: the version side says what the trained folder says outside the platform
    expected = await sync_to_async(generate)(
        path=version.artifact_path,
        messages=chat,
        params=generation_params({"max_new_tokens": 12}),
        on_text=lambda _: None,
    )
    assert done["version"]["text"] == expected.text
    assert done["version"]["text"] != done["base"]["text"]


async def test_other_users_and_bad_params_are_refused(version, researcher, make_user):
    from asgiref.sync import sync_to_async

    other = await sync_to_async(make_user)("olga")
    connected, code = await _communicator(version, other.raw_token).connect()
    assert not connected and code == 4404

    communicator = _communicator(version, researcher.raw_token)
    assert (await communicator.connect())[0]
    await communicator.receive_json_from(timeout=10)
    await communicator.send_json_to(
        {"type": "generate", "messages": [{"role": "user", "content": "hi"}], "params": {"temperature": 9}}
    )
    error = await communicator.receive_json_from(timeout=10)
    assert error == {"type": "error", "side": None, "message": "temperature must be between 0.0 and 5.0"}
    await communicator.disconnect()


def test_playground_page_renders(client, researcher, version):
    client.force_login(researcher)
    page = client.get(f"/models/{version.model_id}/{version.version}/playground/").content.decode()
    assert (
        "registry_playground.js" in page and f"/ws/playground/{version.model_id}/{version.version}/" in page
    )
