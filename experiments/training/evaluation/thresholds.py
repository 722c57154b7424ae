"""Quality thresholds: {"accuracy": {">=": 0.85}, "perplexity": {"<=": 10}} checked against metrics.

A threshold on a metric the evaluation did not compute is reported as "skipped" (a classification run
has no perplexity), never as a pass.
"""

from __future__ import annotations

import operator
from typing import Any

from experiments.training.evaluation.metrics import LOWER_IS_BETTER

DEFAULT_THRESHOLDS: dict[str, dict[str, float]] = {"accuracy": {">=": 0.85}, "perplexity": {"<=": 10}}
OPERATORS = {">=": operator.ge, ">": operator.gt, "<=": operator.le, "<": operator.lt}


def parse_thresholds(value: Any) -> dict[str, dict[str, float]]:
    """Check the shape {metric: {op: number}}; ValueError naming the first bad entry.

    Also accepts the registry's shorthand: a bare number (a minimum, or a maximum for perplexity)
    and {"min": x, "max": y}.
    """
    if not isinstance(value, dict):
        raise ValueError('thresholds: expected an object like {"accuracy": {">=": 0.85}}')
    parsed: dict[str, dict[str, float]] = {}
    for metric, rule in value.items():
        if isinstance(rule, int | float) and not isinstance(rule, bool):
            rule = {"<=" if metric in LOWER_IS_BETTER else ">=": rule}
        elif isinstance(rule, dict):
            rule = {{"min": ">=", "max": "<="}.get(op, op): bound for op, bound in rule.items()}
        if not isinstance(rule, dict) or not rule:
            raise ValueError(f'thresholds.{metric}: expected an object like {{">=": 0.85}}')
        for op, bound in rule.items():
            if op not in OPERATORS:
                raise ValueError(
                    f"thresholds.{metric}: unknown operator {op!r}; use one of {', '.join(OPERATORS)}"
                )
            if isinstance(bound, bool) or not isinstance(bound, int | float):
                raise ValueError(f"thresholds.{metric}.{op}: must be a number, got {bound!r}")
        parsed[str(metric)] = {op: float(bound) for op, bound in rule.items()}
    return parsed


def check_thresholds(metrics: dict[str, Any], thresholds: dict[str, dict[str, float]]) -> dict[str, Any]:
    """{"passed": bool, "checks": [{metric, op, threshold, value, status}]}; passed when no check failed
    and at least one ran."""
    checks = []
    for metric, rule in thresholds.items():
        value = metrics.get(metric)
        for op, bound in rule.items():
            if not isinstance(value, int | float):
                status = "skipped"
            else:
                status = "passed" if OPERATORS[op](value, bound) else "failed"
            checks.append({"metric": metric, "op": op, "threshold": bound, "value": value, "status": status})
    ran = [c for c in checks if c["status"] != "skipped"]
    return {"passed": bool(ran) and all(c["status"] == "passed" for c in ran), "checks": checks}
