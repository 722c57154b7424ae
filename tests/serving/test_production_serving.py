"""Serving in the production layout: PostgreSQL, Redis as broker and channel layer, the web process
and a separately started `manage.py t4dm_serving_worker`; the reply travels through Redis."""

from __future__ import annotations

import json
import sys

import openai
import pytest
from openai import OpenAI

from tests.serving.test_openai_serving import _SETUP, MESSAGES

pytestmark = pytest.mark.e2e


def test_streamed_and_whole_chat_through_redis(production_platform, tiny_model_dir, tmp_path):
    # given: a serving worker of its own, and a researcher with a promoted version
    production_platform.spawn(
        sys.executable, "manage.py", "t4dm_serving_worker", "--name", "e2e-serving@%h",
        log=tmp_path / "serving-worker.log",
    )  # fmt: skip
    token = production_platform.manage(
        "create_api_token", "carol", "--create-user", "--role", "researcher"
    ).strip()
    script = _SETUP.replace("USERNAME", "carol").replace("TINY", str(tiny_model_dir))
    names = json.loads(production_platform.manage("shell", "-c", script).strip().splitlines()[-1])
    client = OpenAI(base_url=production_platform.base_url + "/v1", api_key=token, max_retries=0, timeout=180)

    # when
    whole = client.chat.completions.create(
        model=names["stage"], messages=MESSAGES, max_tokens=10, temperature=0
    )
    chunks = list(
        client.chat.completions.create(
            model=names["ft"], messages=MESSAGES, max_tokens=10, temperature=0, stream=True
        )
    )

    # then
    assert whole.choices[0].message.content
    assert "".join(c.choices[0].delta.content or "" for c in chunks) == whole.choices[0].message.content
    with pytest.raises(openai.NotFoundError):  # and an unknown model is the same 404 here
        client.chat.completions.create(model="someone-else@1.0.0", messages=MESSAGES)
