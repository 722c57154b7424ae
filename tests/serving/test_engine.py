"""The serving engine in-process (no worker, no web side): batching of concurrent requests gives each
request the answer it gets alone, stop strings, cancellation, and unloading an idle model."""

from __future__ import annotations

import queue
import time

import pytest

from models_registry.serving.engine import Engine, Request


def _spec(path, prompt: str, **overrides) -> dict:
    return {"path": str(path), "kind": "completion", "prompt": prompt, "max_tokens": 8, "temperature": 0.0,
            "top_p": 1.0, "stop": [], "seed": None, **overrides}  # fmt: skip


def _result(request: Request, timeout: float = 120) -> tuple[str, dict]:
    text = []
    while True:
        event = request.events.get(timeout=timeout)
        if event["type"] == "delta":
            text.append(event["text"])
        elif event["type"] in ("done", "error"):
            return "".join(text), event


@pytest.fixture(scope="module")
def alone(tiny_model_dir):
    """Each prompt's greedy answer when it runs on its own."""
    engine = Engine(max_batch=1, idle_s=60)
    prompts = ["The platform", "A model that is trained on", "Data", "The worker runs"]
    return {
        p: _result(engine.submit(_spec(tiny_model_dir, p, max_tokens=6 + i))) for i, p in enumerate(prompts)
    }


def test_concurrent_requests_run_as_one_batch_with_their_own_answers(tiny_model_dir, alone):
    # given: requests that are waiting together when the engine takes its next round
    engine = Engine(max_batch=8, idle_s=60, start=False)
    requests = {p: engine.submit(_spec(tiny_model_dir, p, max_tokens=6 + i)) for i, p in enumerate(alone)}
    # when
    engine.start()
    results = {p: _result(r) for p, r in requests.items()}
    # then: one batch of four (different prompt lengths and token limits), and the answers alone
    assert engine.batch_sizes == [4]
    assert {p: text for p, (text, _) in results.items()} == {p: text for p, (text, _) in alone.items()}
    for prompt, (_, done) in results.items():
        assert done["type"] == "done" and done["completion_tokens"] == alone[prompt][1]["completion_tokens"]


def test_sampled_and_greedy_requests_are_not_mixed(tiny_model_dir):
    engine = Engine(max_batch=8, idle_s=60, start=False)
    greedy = [engine.submit(_spec(tiny_model_dir, "The platform")) for _ in range(2)]
    sampled = engine.submit(_spec(tiny_model_dir, "The platform", temperature=0.8, seed=3))
    engine.start()
    for request in [*greedy, sampled]:
        assert _result(request)[1]["type"] == "done"
    assert sorted(engine.batch_sizes) == [1, 2]


def test_a_stop_string_ends_the_answer_before_it(tiny_model_dir, alone):
    text, _ = alone["The platform"]
    assert len(text) > 3
    stop = text[2:4]
    engine = Engine(max_batch=8, idle_s=60)
    cut, done = _result(engine.submit(_spec(tiny_model_dir, "The platform", max_tokens=6, stop=[stop])))
    assert cut == text[: text.find(stop)] and done["finish_reason"] == "stop"


def test_a_cancelled_request_stops_early(tiny_model_dir):
    engine = Engine(max_batch=8, idle_s=60, start=False)
    request = engine.submit(_spec(tiny_model_dir, "The platform", max_tokens=200))
    request.cancelled.set()
    other = engine.submit(_spec(tiny_model_dir, "The platform", max_tokens=5))
    engine.start()
    assert _result(other)[1]["completion_tokens"] == 5
    with pytest.raises(queue.Empty):  # never started: nothing to send
        request.events.get(timeout=0.5)


def test_a_prompt_over_the_context_is_an_error_event(tiny_model_dir):
    engine = Engine(max_batch=8, idle_s=60)
    _, event = _result(engine.submit(_spec(tiny_model_dir, "word " * 600)))
    assert event["type"] == "error" and event["status"] == 400 and event["code"] == "context_length_exceeded"


def test_an_idle_model_is_unloaded(tiny_model_dir):
    engine = Engine(max_batch=8, idle_s=0.3)
    _result(engine.submit(_spec(tiny_model_dir, "The platform")))
    assert str(tiny_model_dir) in engine.pool.models or engine.pool.models == {}
    deadline = time.monotonic() + 10
    while engine.pool.models and time.monotonic() < deadline:
        time.sleep(0.1)
    assert engine.pool.models == {}
    # and it loads again on the next request
    assert _result(engine.submit(_spec(tiny_model_dir, "The platform")))[1]["type"] == "done"
