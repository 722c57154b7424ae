"""JSON from users with a cap on nesting depth. `json.loads` raises RecursionError (a 500) on a few
thousand nested brackets, and code that walks a parsed value recursively (jsonschema checking a schema,
for one) fails far earlier; no document this platform accepts needs more than a few levels."""

from __future__ import annotations

import json
from typing import Any

from t4dm_site.errors import InvalidInput

MAX_JSON_DEPTH = 64


def json_depth(value: Any) -> int:
    """Nesting depth of a parsed JSON value (a scalar is 0, `[]` is 1), without recursion."""
    deepest, stack = 0, [(value, 0)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, dict):
            item = list(item.values())
        elif not isinstance(item, list):
            continue
        deepest = max(deepest, depth + 1)
        stack.extend((child, depth + 1) for child in item)
    return deepest


def loads_bounded(text: str | bytes, *, what: str, max_depth: int = MAX_JSON_DEPTH) -> Any:
    """`json.loads`, raising json.JSONDecodeError as it does, and InvalidInput (400) for a document
    nested deeper than `max_depth`."""
    too_deep = f"{what}: JSON nested deeper than {max_depth} levels"
    try:
        value = json.loads(text)
    except RecursionError:
        raise InvalidInput(too_deep, code="invalid_input") from None
    if json_depth(value) > max_depth:
        raise InvalidInput(too_deep, code="invalid_input")
    return value
