"""The real `openai` package against a live embedded T4DM (`t4dm_up`: daphne, the training worker and
the serving worker): chat and text completions from a promoted version, streamed and not, named by
version ref, stage and `ft:` name; another researcher's model, an unknown one and a bad request answer
in OpenAI's error shape."""

from __future__ import annotations

import json
import threading
import time

import httpx
import openai
import pytest
from openai import OpenAI

pytestmark = pytest.mark.e2e

# A succeeded job of `username` whose final model is the tiny model, its registered version promoted to
# production, and an OpenAI fine-tuning job around it (for the ft: name). Prints the names to use.
_SETUP = """
import json
from django.contrib.auth import get_user_model
from datasets_app.services import dataset_prepare
from experiments.openai_compat.models import OpenAIFile, OpenAIFineTuneJob
from experiments.openai_compat.services import fine_tuned_model_name
from experiments.services import training_config_create
from experiments.models import TrainingJob
from models_registry.models import ModelVersion
from models_registry.services import model_version_create
from tests.conftest import DEMO_ROWS
owner = get_user_model().objects.get(username="USERNAME")
rows = DEMO_ROWS.read_bytes()
version = dataset_prepare(owner=owner, name="serving", content=rows, task_type="chat")
config = training_config_create(owner=owner, dataset_id=version.dataset.public_id, model_base="t4dm-tiny",
    approach="lora", hyperparams={"epochs": 1})
job = TrainingJob.objects.create(owner=owner, config=config, experiment=config.experiment)
job.mark_queued()
job.mark_running(worker="test")
job.mark_succeeded(final_model_path="TINY")
model = ModelVersion.objects.filter(job=job).first() or model_version_create(job=job, model_id="USERNAME-bot")
model.set_stage("production")
upload = OpenAIFile.objects.create(owner=owner, filename="serving.jsonl", purpose="fine-tune", content=rows,
    dataset_version=version)
ftjob = OpenAIFineTuneJob.objects.create(job=job, training_file=upload, model="t4dm-tiny", suffix="bot", seed=1,
    hyperparameters={})
print(json.dumps({"version": f"{model.model_id}@{model.version}", "stage": f"{model.model_id}@production",
    "ft": fine_tuned_model_name(ftjob)}))
"""


@pytest.fixture(scope="module")
def researchers(embedded_platform, tiny_model_dir):
    """Two researchers with their own served models: {"alice": {"token", "version", "stage", "ft"}, ...}."""
    found = {}
    for name in ("alice", "bob"):
        token = embedded_platform.manage("create_api_token", name, "--create-user", "--role", "researcher")
        script = _SETUP.replace("USERNAME", name).replace("TINY", str(tiny_model_dir))
        names = json.loads(embedded_platform.manage("shell", "-c", script).strip().splitlines()[-1])
        found[name] = {"token": token.strip(), **names}
    return found


def _client(platform, token: str) -> OpenAI:
    return OpenAI(base_url=platform.base_url + "/v1", api_key=token, max_retries=0, timeout=180)


MESSAGES = [{"role": "user", "content": "What does T4DM do?"}]


def test_chat_completion_from_a_promoted_version(embedded_platform, researchers):
    alice = researchers["alice"]
    client = _client(embedded_platform, alice["token"])

    # when: the same greedy request by version ref, by stage and by ft: name
    answers = [
        client.chat.completions.create(model=name, messages=MESSAGES, max_tokens=12, temperature=0)
        for name in (alice["version"], alice["stage"], alice["ft"])
    ]

    # then: OpenAI's chat.completion, the same text each time, usage counted
    first = answers[0]
    assert first.object == "chat.completion" and first.id.startswith("chatcmpl-")
    assert first.model == alice["version"]
    choice = first.choices[0]
    assert choice.message.role == "assistant" and choice.message.content
    assert choice.finish_reason in ("length", "stop")
    assert first.usage.prompt_tokens > 0 and 0 < first.usage.completion_tokens <= 12
    assert first.usage.total_tokens == first.usage.prompt_tokens + first.usage.completion_tokens
    assert {a.choices[0].message.content for a in answers} == {choice.message.content}


def test_streamed_chat_gives_the_same_text_in_chunks(embedded_platform, researchers):
    alice = researchers["alice"]
    client = _client(embedded_platform, alice["token"])
    whole = client.chat.completions.create(
        model=alice["version"], messages=MESSAGES, max_tokens=16, temperature=0
    )

    stream = client.chat.completions.create(
        model=alice["version"], messages=MESSAGES, max_tokens=16, temperature=0, stream=True,
        stream_options={"include_usage": True},
    )  # fmt: skip
    chunks = list(stream)

    assert all(c.object == "chat.completion.chunk" for c in chunks)
    assert len({c.id for c in chunks}) == 1
    assert chunks[0].choices[0].delta.role == "assistant"
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == whole.choices[0].message.content
    finishes = [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason]
    assert finishes == [whole.choices[0].finish_reason]
    assert chunks[-1].usage.completion_tokens == whole.usage.completion_tokens


def test_text_completions_streamed_and_not(embedded_platform, researchers):
    alice = researchers["alice"]
    client = _client(embedded_platform, alice["token"])

    whole = client.completions.create(model=alice["ft"], prompt="The platform", max_tokens=10, temperature=0)
    streamed = list(
        client.completions.create(
            model=alice["ft"], prompt="The platform", max_tokens=10, temperature=0, stream=True
        )
    )

    assert whole.object == "text_completion" and whole.choices[0].text
    assert whole.usage.completion_tokens <= 10
    assert "".join(c.choices[0].text for c in streamed) == whole.choices[0].text
    assert streamed[-1].choices[0].finish_reason == whole.choices[0].finish_reason


def test_concurrent_requests_all_get_their_own_answer(embedded_platform, researchers):
    alice = researchers["alice"]
    client = _client(embedded_platform, alice["token"])
    prompts = ["The platform", "A model", "Training data", "The worker"]
    alone = {
        p: client.completions.create(model=alice["version"], prompt=p, max_tokens=8, temperature=0)
        .choices[0]
        .text
        for p in prompts
    }
    together: dict[str, str] = {}

    def ask(prompt: str) -> None:
        answer = client.completions.create(model=alice["version"], prompt=prompt, max_tokens=8, temperature=0)
        together[prompt] = answer.choices[0].text

    threads = [threading.Thread(target=ask, args=(p,)) for p in prompts]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)

    assert together == alone  # batched or not, greedy answers do not change


def test_another_researchers_model_is_not_found(embedded_platform, researchers):
    bob = _client(embedded_platform, researchers["bob"]["token"])
    for name in (researchers["alice"]["version"], researchers["alice"]["ft"], researchers["alice"]["stage"]):
        with pytest.raises(openai.NotFoundError) as caught:
            bob.chat.completions.create(model=name, messages=MESSAGES, max_tokens=4)
        assert caught.value.status_code == 404
        assert (
            caught.value.body["code"] == "model_not_found"
            and caught.value.body["type"] == "invalid_request_error"
        )
    with pytest.raises(openai.NotFoundError):
        bob.models.retrieve(researchers["alice"]["version"])
    # and /v1/models lists each one's own models only
    listed = {m.id for m in bob.models.list()}
    assert researchers["bob"]["version"] in listed and researchers["bob"]["ft"] in listed
    assert not {researchers["alice"]["version"], researchers["alice"]["ft"]} & listed


def test_unknown_model_is_not_found(embedded_platform, researchers):
    client = _client(embedded_platform, researchers["alice"]["token"])
    with pytest.raises(openai.NotFoundError):
        client.chat.completions.create(model="nobody-bot@9.9.9", messages=MESSAGES)
    with pytest.raises(openai.NotFoundError):
        client.completions.create(model="ft:t4dm-tiny:org-t4dm:x:ftjob-nothing", prompt="hi")


def test_bad_requests_answer_400_in_openais_shape(embedded_platform, researchers):
    alice = researchers["alice"]
    client = _client(embedded_platform, alice["token"])

    with pytest.raises(openai.BadRequestError) as caught:
        client.chat.completions.create(model=alice["version"], messages=MESSAGES, temperature=7)
    assert (
        caught.value.body["param"] == "temperature" and caught.value.body["type"] == "invalid_request_error"
    )
    with pytest.raises(openai.BadRequestError) as caught:
        client.chat.completions.create(model=alice["version"], messages=[])
    assert caught.value.body["param"] == "messages"
    with pytest.raises(openai.BadRequestError) as caught:  # longer than the tiny model's 512 positions
        client.completions.create(model=alice["version"], prompt="word " * 600, max_tokens=4, stream=True)
    assert caught.value.body["code"] == "context_length_exceeded"
    # an argument OpenAI does not have is refused too, and without a token nothing is served
    response = httpx.post(
        embedded_platform.base_url + "/v1/chat/completions",
        headers={"Authorization": f"Bearer {alice['token']}"},
        json={"model": alice["version"], "messages": MESSAGES, "temprature": 0},
    )
    assert response.status_code == 400 and response.json()["error"]["param"] == "temprature"
    anonymous = httpx.post(
        embedded_platform.base_url + "/v1/completions", json={"model": "t4dm-tiny", "prompt": "x"}
    )
    assert anonymous.status_code == 401


def test_a_forged_reply_token_is_refused(embedded_platform):
    response = httpx.post(
        embedded_platform.base_url + "/v1/serving/events/",
        json={"reply": "serving.x!y:forged", "events": [{"type": "delta", "text": "injected"}]},
    )
    assert response.status_code == 403


def test_a_client_that_leaves_mid_stream_stops_its_generation(embedded_platform, researchers, tmp_path):
    alice = researchers["alice"]
    log = embedded_platform.env["T4DM_DATA_DIR"] + "/t4dm_up.log"
    # given: a long streamed completion (greedy, 480 tokens: several seconds on this machine)
    with httpx.stream(
        "POST", embedded_platform.base_url + "/v1/completions",
        headers={"Authorization": f"Bearer {alice['token']}"},
        json={"model": alice["version"], "prompt": "The platform trains a model on the data and", "max_tokens": 480,
              "temperature": 0, "stream": True},
        timeout=120,
    ) as response:  # fmt: skip
        assert response.status_code == 200
        # when: the client reads the first chunk and hangs up
        first = next(response.iter_lines())
        assert first.startswith("data: {")
    # then: the worker hears 410 at its next post and drops the request from its batch
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        with open(log, errors="replace") as f:
            if "'stopped (410)'" in f.read():
                return
        time.sleep(0.5)
    raise AssertionError("the worker did not stop generating for the client that left")
