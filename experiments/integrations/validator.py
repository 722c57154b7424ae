"""The pluggable validator hook (the seed's "validator" integration point).

Configure one or both:
- ``T4DM_VALIDATOR_HOOK=package.module:function`` — called in-process as ``function(kind, payload)``;
- ``T4DM_VALIDATOR_URL=https://validator.example/check`` — POSTed ``{"kind": kind, **payload}`` as JSON.

``kind`` is ``"dataset"`` (during validate_dataset: payload ``{"task_type", "dataset_id", "rows": [{"row",
"split", "data"}]}``) or ``"outputs"`` (during an evaluation: payload ``{"evaluation_id", "model_path",
"task_type", "samples": [{"index", "input", "expected", "output"}]}``).

The hook answers a dict: for datasets ``{"issues": [{"severity": "error|warning|info", "message", "row"?,
"split"?, "code"?}]}``; for outputs ``{"verdicts": [{"index", "passed": bool, "score"?, "message"?}]}``.
A hook that fails (cannot be imported, raises, times out, answers non-2xx or malformed JSON) never
breaks the validation or evaluation: its failure is reported as a ``validator_hook_error`` issue (or in
the evaluation's ``details.validator.errors``) with the reason.
"""

from __future__ import annotations

import importlib
import logging
from collections.abc import Callable
from typing import Any

import httpx
from django.conf import settings

log = logging.getLogger(__name__)

MAX_ROWS = 1000
SEVERITIES = ("error", "warning", "info")
HOOK_ERROR = "validator_hook_error"


class HookError(Exception):
    pass


def hooks() -> list[tuple[str, Callable[[str, dict], Any]]]:
    """(name, caller) for each configured hook."""
    found = []
    if settings.VALIDATOR_HOOK:
        found.append((settings.VALIDATOR_HOOK, _python_hook(settings.VALIDATOR_HOOK)))
    if settings.VALIDATOR_URL:
        found.append((settings.VALIDATOR_URL, _http_hook(settings.VALIDATOR_URL)))
    return found


def _python_hook(spec: str) -> Callable[[str, dict], Any]:
    def call(kind: str, payload: dict) -> Any:
        module_name, _, attr = spec.partition(":")
        try:
            function = getattr(importlib.import_module(module_name), attr)
        except (ImportError, AttributeError) as exc:
            raise HookError(f"cannot load {spec}: {type(exc).__name__}: {exc}") from None
        try:
            return function(kind, payload)
        except Exception as exc:  # the hook is someone else's code: report, never crash
            raise HookError(f"{spec} raised {type(exc).__name__}: {exc}") from None

    return call


def _http_hook(url: str) -> Callable[[str, dict], Any]:
    def call(kind: str, payload: dict) -> Any:
        try:
            response = httpx.post(
                url, json={"kind": kind, **payload}, timeout=settings.VALIDATOR_TIMEOUT_SECONDS
            )
        except httpx.HTTPError as exc:
            raise HookError(f"{url} unreachable: {type(exc).__name__}: {exc}") from None
        if response.status_code >= 300:
            raise HookError(f"{url} answered HTTP {response.status_code}: {response.text[:300]}")
        try:
            return response.json()
        except ValueError:
            raise HookError(f"{url} answered non-JSON: {response.text[:300]!r}") from None

    return call


# --- datasets ------------------------------------------------------------------------------------
def dataset_issues(*, task_type: str, rows: list[dict], dataset_id: str | None = None) -> list[dict]:
    """The hooks' issues for these rows, each marked source "hook" (plus one issue per failed hook)."""
    issues: list[dict] = []
    payload = {"task_type": task_type, "dataset_id": dataset_id, "rows": rows[:MAX_ROWS]}
    for name, call in hooks():
        try:
            answer = call("dataset", payload)
            issues.extend(_clean_issues(answer, name))
        except HookError as exc:
            issues.append(_hook_error(str(exc), name))
    return issues


def _clean_issues(answer: Any, name: str) -> list[dict]:
    if answer is None:
        return []
    listed = answer.get("issues", []) if isinstance(answer, dict) else answer
    if not isinstance(listed, list):
        raise HookError(f'{name}: "issues" must be a list of {{"severity", "message"}}, got {listed!r:.200}')
    cleaned = []
    for raw in listed:
        if not isinstance(raw, dict) or not isinstance(raw.get("message"), str):
            raise HookError(f"{name}: each issue needs a message, got {raw!r:.200}")
        severity = raw.get("severity", "warning")
        if severity not in SEVERITIES:
            raise HookError(
                f"{name}: issue severity must be one of {', '.join(SEVERITIES)}, got {severity!r}"
            )
        row = raw.get("row")
        cleaned.append(
            {
                "code": str(raw.get("code") or "validator_hook"),
                "severity": severity,
                "row": row if isinstance(row, int) and not isinstance(row, bool) else None,
                "line": None,
                "field": raw.get("field") if isinstance(raw.get("field"), str) else None,
                "message": raw["message"],
                "split": raw.get("split") if isinstance(raw.get("split"), str) else None,
                "source": "hook",
                "hook": name,
            }
        )
    return cleaned


def _hook_error(message: str, name: str) -> dict:
    log.warning("validator hook failed: %s", message)
    return {
        "code": HOOK_ERROR,
        "severity": "warning",
        "row": None,
        "line": None,
        "field": None,
        "message": f"validator hook failed, its checks did not run: {message}",
        "source": "hook",
        "hook": name,
    }


def merge_into_report(report: dict, hook_issues: list[dict]) -> dict:
    """validate_dataset's report with the hook's issues added: status and summary counts follow."""
    if not hook_issues:
        return report
    report["issues"] = [*report["issues"], *hook_issues]
    summary = report.setdefault("summary", {})
    by_code = summary.setdefault("by_code", {})
    for issue in hook_issues:
        summary[issue["severity"]] = summary.get(issue["severity"], 0) + 1
        by_code[issue["code"]] = by_code.get(issue["code"], 0) + 1
    severities = {i["severity"] for i in hook_issues}
    if "error" in severities:
        report["status"] = "failed"
    elif "warning" in severities and report["status"] == "passed":
        report["status"] = "warning"
    return report


# --- evaluation outputs ----------------------------------------------------------------------------
def outputs_validate(*, evaluation, sample_outputs: list[dict]) -> dict | None:
    """{"verdicts", "passed", "failed", "errors"} for an evaluation's sample outputs; None without hooks."""
    configured = hooks()
    if not configured:
        return None
    samples = [
        {
            "index": index,
            "input": sample.get("prompt", ""),
            "expected": sample.get("reference", ""),
            "output": sample.get("generated", ""),
        }
        for index, sample in enumerate(sample_outputs[:MAX_ROWS])
    ]
    payload = {
        "evaluation_id": evaluation.public_id,
        "model_path": evaluation.model_path,
        "task_type": evaluation.task_type,
        "samples": samples,
    }
    verdicts: list[dict] = []
    errors: list[str] = []
    for name, call in configured:
        try:
            verdicts.extend(_clean_verdicts(call("outputs", payload), name, len(samples)))
        except HookError as exc:
            log.warning("validator hook failed on %s: %s", evaluation.public_id, exc)
            errors.append(str(exc))
    return {
        "verdicts": verdicts,
        "passed": sum(1 for v in verdicts if v["passed"]),
        "failed": sum(1 for v in verdicts if not v["passed"]),
        "errors": errors,
    }


def _clean_verdicts(answer: Any, name: str, n: int) -> list[dict]:
    listed = answer.get("verdicts") if isinstance(answer, dict) else answer
    if not isinstance(listed, list):
        raise HookError(f'{name}: expected {{"verdicts": [{{"index", "passed"}}, ...]}}, got {answer!r:.200}')
    cleaned = []
    for raw in listed:
        index = raw.get("index") if isinstance(raw, dict) else None
        if not isinstance(index, int) or isinstance(index, bool) or not 0 <= index < n:
            raise HookError(f"{name}: each verdict needs an index in 0..{n - 1}, got {raw!r:.200}")
        if not isinstance(raw.get("passed"), bool):
            raise HookError(f"{name}: verdict {index} needs passed: true|false")
        verdict = {"index": index, "passed": raw["passed"], "hook": name}
        if isinstance(raw.get("score"), int | float) and not isinstance(raw.get("score"), bool):
            verdict["score"] = raw["score"]
        if isinstance(raw.get("message"), str):
            verdict["message"] = raw["message"]
        cleaned.append(verdict)
    return cleaned
