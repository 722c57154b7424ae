"""The evaluation engine: metrics by task type on local `evaluate` modules, comparison to the base,
compare_models / compare_versions, quality thresholds. Plain Python, no Django.

Names are imported lazily: the platform's web process reads the metric registry, paths and
thresholds without paying for torch; the worker imports the rest when it evaluates.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "compare_models": "compare",
    "compare_versions": "compare",
    "paired_bootstrap": "compare",
    "comparison_to_base": "core",
    "evaluate_model": "core",
    "format_delta": "core",
    "load_model_for_eval": "core",
    "read_test_rows": "core",
    "token_nll": "core",
    "ALL_METRIC_NAMES": "metrics",
    "DEFAULT_METRICS": "metrics",
    "LOWER_IS_BETTER": "metrics",
    "metrics_for_task": "metrics",
    "resolve_metrics": "metrics",
    "check_model_path": "paths",
    "is_adapter": "paths",
    "DEFAULT_THRESHOLDS": "thresholds",
    "check_thresholds": "thresholds",
    "parse_thresholds": "thresholds",
}
__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"{__name__}.{_EXPORTS[name]}"), name)
