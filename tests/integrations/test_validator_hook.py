"""The pluggable validator hook: a Python entry point or an HTTP endpoint, called during dataset
validation (issues merged with source "hook") and during evaluation (verdicts on the sample outputs)."""

from __future__ import annotations

import pytest

from datasets_app.services import dataset_validate
from experiments.evaluation.services import evaluation_start
from experiments.evaluation.tasks import evaluate_task
from experiments.models import Evaluation
from tests.datasets_app.conftest import chat, distinct_chat_rows, jsonl
from tests.integrations import hooks


@pytest.fixture(autouse=True)
def _no_hooks(settings):
    settings.VALIDATOR_HOOK = ""
    settings.VALIDATOR_URL = ""
    settings.VALIDATOR_TIMEOUT_SECONDS = 5
    hooks.CALLS.clear()


def _rows() -> bytes:
    return jsonl([*distinct_chat_rows(20), chat("What is the capital of Peru?", "Lima")])


def test_a_python_hook_adds_its_issues_to_the_report(settings, artifact_root):
    assert dataset_validate(content=_rows(), task_type="chat")["status"] == "passed"

    settings.VALIDATOR_HOOK = "tests.integrations.hooks:flag_short_answers"
    report = dataset_validate(content=_rows(), task_type="chat")

    assert report["status"] == "failed"
    [issue] = [i for i in report["issues"] if i.get("source") == "hook"]
    assert issue["code"] == "answer_too_short" and issue["severity"] == "error" and issue["row"] == 21
    assert issue["hook"] == "tests.integrations.hooks:flag_short_answers" and "'Lima'" in issue["message"]
    assert report["summary"]["error"] == 1 and report["summary"]["by_code"]["answer_too_short"] == 1
    [(kind, payload)] = hooks.CALLS
    assert kind == "dataset" and payload["task_type"] == "chat" and len(payload["rows"]) == 21


def test_an_http_hook_is_called_through_the_api_on_a_stored_version(
    api, researcher, settings, receiver, demo_config
):
    settings.VALIDATOR_URL = receiver.url
    receiver.answer = {
        "issues": [
            {"severity": "warning", "message": "mentions an internal hostname", "row": 2, "split": "train"}
        ]
    }
    dataset_id = demo_config.dataset_version.dataset.public_id

    response = api.post(researcher, f"/datasets/{dataset_id}/validate", {})

    assert response.status_code == 200, response.content
    report = response.json()
    hook_issues = [i for i in report["issues"] if i.get("source") == "hook"]
    assert hook_issues == [
        {
            "code": "validator_hook",
            "severity": "warning",
            "row": 2,
            "line": None,
            "field": None,
            "message": "mentions an internal hostname",
            "split": "train",
            "source": "hook",
            "hook": receiver.url,
        }
    ]
    assert report["status"] in ("warning", "failed")
    sent = receiver.requests[0].json()
    assert sent["kind"] == "dataset" and sent["dataset_id"] == dataset_id
    assert {r["split"] for r in sent["rows"]} >= {"train", "test"}


@pytest.mark.parametrize(
    ("configure", "needle"),
    [
        (
            lambda s, r: setattr(s, "VALIDATOR_HOOK", "tests.integrations.hooks:broken"),
            "RuntimeError: the knowledge service is down",
        ),
        (
            lambda s, r: setattr(s, "VALIDATOR_HOOK", "tests.integrations.nowhere:check"),
            "cannot load tests.integrations.nowhere:check",
        ),
        (
            lambda s, r: (setattr(s, "VALIDATOR_URL", r.url), setattr(r, "statuses", [500])),
            "answered HTTP 500",
        ),
        (lambda s, r: setattr(s, "VALIDATOR_URL", "http://127.0.0.1:9/check"), "unreachable"),
        (
            lambda s, r: (setattr(s, "VALIDATOR_URL", r.url), setattr(r, "answer", {"issues": "nope"})),
            '"issues" must be a list',
        ),
    ],
)
def test_a_failing_hook_is_reported_as_an_issue_not_a_500(
    api, researcher, settings, receiver, artifact_root, configure, needle
):
    configure(settings, receiver)
    response = api.upload(researcher, "/datasets/validate", content=_rows(), task_type="chat")
    assert response.status_code == 200, response.content
    [issue] = [i for i in response.json()["issues"] if i.get("source") == "hook"]
    assert issue["code"] == "validator_hook_error" and issue["severity"] == "warning"
    assert "validator hook failed" in issue["message"] and needle in issue["message"]


def test_an_evaluation_records_the_hooks_verdicts_on_its_sample_outputs(
    api, researcher, settings, receiver, demo_config, tiny_model_dir, django_capture_on_commit_callbacks
):
    settings.VALIDATOR_HOOK = "tests.integrations.hooks:flag_short_answers"
    settings.VALIDATOR_URL = receiver.url
    receiver.answer = {
        "verdicts": [{"index": 0, "passed": False, "message": "not grounded in the knowledge base"}]
    }
    with django_capture_on_commit_callbacks(execute=False):
        evaluation = evaluation_start(
            owner=researcher,
            model_path=str(tiny_model_dir),
            test_dataset=demo_config.dataset_version.dataset.public_id,
            metrics=["perplexity"],
            compare_to_base=False,
            max_samples=3,
        )

    evaluate_task(evaluation.pk)

    result = api.get(researcher, f"/evaluations/{Evaluation.objects.get().public_id}").json()
    assert result["status"] == "succeeded", result["error"]
    validator = result["details"]["validator"]
    samples = result["sample_outputs"]
    python_verdicts = [v for v in validator["verdicts"] if v["hook"].startswith("tests.")]
    assert len(python_verdicts) == len(samples) >= 1
    assert python_verdicts[0]["score"] == len(samples[0]["generated"])
    http_verdict = next(v for v in validator["verdicts"] if v["hook"] == receiver.url)
    assert http_verdict == {
        "index": 0,
        "passed": False,
        "hook": receiver.url,
        "message": "not grounded in the knowledge base",
    }
    assert validator["errors"] == [] and validator["failed"] >= 1
    sent = receiver.requests[0].json()
    assert sent["kind"] == "outputs" and sent["samples"][0]["output"] == samples[0]["generated"]
