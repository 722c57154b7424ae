"""Row schemas per task type: check a raw row and turn it into the canonical stored form.

Canonical rows (also the Parquet columns):
- chat: {"messages": [{"role", "content"}, ...]}
- instruction: {"instruction", "input", "output"}
- completion: {"prompt", "completion", "text"} (prompt/completion, or text; the others null)
- classification: {"text", "label"} (label: a string or an integer)
- preference: {"prompt", "chosen", "rejected"} (pairwise human preferences, e.g. from human eval)

Structural problems are errors (the row cannot be stored). Problems `clean_dataset` can fix (role case,
empty content) are warnings: the row is stored as it came, and the warning says how to fix it.
"""

from __future__ import annotations

from typing import Any

import pyarrow as pa

from datasets_app.issues import ERROR, INFO, WARNING

ROLES = ("system", "user", "assistant")
TASK_FIELDS = {
    "chat": ("messages",),
    "instruction": ("instruction", "input", "output"),
    "completion": ("prompt", "completion", "text"),
    "classification": ("text", "label"),
    "preference": ("prompt", "chosen", "rejected"),
}
ARROW_SCHEMAS = {
    "chat": pa.schema([("messages", pa.list_(pa.struct([("role", pa.string()), ("content", pa.string())])))]),
    "instruction": pa.schema([("instruction", pa.string()), ("input", pa.string()), ("output", pa.string())]),
    "completion": pa.schema([("prompt", pa.string()), ("completion", pa.string()), ("text", pa.string())]),
    "preference": pa.schema([("prompt", pa.string()), ("chosen", pa.string()), ("rejected", pa.string())]),
}

Problem = tuple[str, str, str | None, str]  # code, severity, field, message


def guess_task_type(raw: dict) -> str | None:
    keys = set(raw)
    if "messages" in keys:
        return "chat"
    if {"instruction", "output"} <= keys:
        return "instruction"
    if "label" in keys:
        return "classification"
    if {"chosen", "rejected"} <= keys:
        return "preference"
    if "prompt" in keys or "completion" in keys:
        return "completion"
    return None


def _missing(task_type: str, field: str, raw: dict, what: str) -> Problem:
    guess = guess_task_type(raw)
    hint = ""
    if guess and guess != task_type:
        hint = f"; this row looks like a {guess} row (fields {', '.join(sorted(raw))}): upload it with task_type={guess}"
    elif not raw:
        hint = "; the row is an empty object"
    return ("missing_field", ERROR, field, f"{task_type} rows need {what}{hint}")


def _type_name(value: Any) -> str:
    return "null" if value is None else type(value).__name__


def normalise_row(raw: Any, task_type: str) -> tuple[dict | None, list[Problem]]:
    """Return (canonical row or None when it has errors, problems)."""
    if not isinstance(raw, dict):
        return None, [
            ("not_an_object", ERROR, None, f"each row must be a JSON object, not {_type_name(raw)}")
        ]
    problems: list[Problem] = []
    extra = sorted(set(raw) - set(TASK_FIELDS[task_type]))
    if extra:
        problems.append(
            ("extra_field", INFO, ", ".join(extra), f"fields {', '.join(extra)} are not used and not stored")
        )
    row = _NORMALISERS[task_type](raw, problems)
    if any(p[1] == ERROR for p in problems):
        return None, problems
    return row, problems


def _chat(raw: dict, problems: list[Problem]) -> dict | None:
    messages = raw.get("messages")
    if messages is None:
        problems.append(_missing("chat", "messages", raw, "a 'messages' list"))
        return None
    if not isinstance(messages, list) or not messages:
        problems.append(
            (
                "wrong_type",
                ERROR,
                "messages",
                f"'messages' must be a non-empty list, not {_type_name(messages)}",
            )
        )
        return None
    out = []
    for i, message in enumerate(messages):
        field = f"messages[{i}]"
        if not isinstance(message, dict):
            problems.append(("wrong_type", ERROR, field, f"{field} must be an object with role and content"))
            continue
        role, content = message.get("role"), message.get("content")
        if not isinstance(role, str):
            problems.append(("missing_field", ERROR, f"{field}.role", f"{field}.role must be a string"))
            continue
        if role not in ROLES:
            if role.strip().lower() in ROLES:
                problems.append(
                    (
                        "role_case",
                        WARNING,
                        f"{field}.role",
                        f"{field}.role is {role!r}; use {role.strip().lower()!r} (clean_dataset fixes it)",
                    )
                )
            else:
                problems.append(
                    (
                        "unknown_role",
                        ERROR,
                        f"{field}.role",
                        f"{field}.role is {role!r}; use system, user or assistant",
                    )
                )
                continue
        if not isinstance(content, str):
            problems.append(
                (
                    "wrong_type",
                    ERROR,
                    f"{field}.content",
                    f"{field}.content must be a string, not {_type_name(content)}",
                )
            )
            continue
        if not content.strip():
            problems.append(
                ("empty_content", WARNING, f"{field}.content", f"{field}.content is empty or whitespace")
            )
        out.append({"role": role, "content": content})
    if any(p[1] == ERROR for p in problems):
        return None
    roles = [m["role"].strip().lower() for m in out]
    body = roles[1:] if roles and roles[0] == "system" else roles
    expected = ["user" if i % 2 == 0 else "assistant" for i in range(len(body))]
    if not body or body != expected or body[-1] != "assistant":
        problems.append(
            (
                "role_order",
                ERROR,
                "messages",
                f"roles are {' → '.join(roles) or 'none'}; use an optional system message first, then user "
                "and assistant alternating, starting with user and ending with assistant",
            )
        )
        return None
    return {"messages": out}


def _text_field(raw: dict, name: str, problems: list[Problem], *, required: bool, task: str) -> str | None:
    value = raw.get(name)
    if value is None:
        if required:
            problems.append(_missing(task, name, raw, f"a '{name}' string"))
        return None
    if not isinstance(value, str):
        problems.append(("wrong_type", ERROR, name, f"'{name}' must be a string, not {_type_name(value)}"))
        return None
    if required and not value.strip():
        problems.append(("empty_content", WARNING, name, f"'{name}' is empty or whitespace"))
    return value


def _instruction(raw: dict, problems: list[Problem]) -> dict:
    return {
        "instruction": _text_field(raw, "instruction", problems, required=True, task="instruction"),
        "input": _text_field(raw, "input", problems, required=False, task="instruction") or "",
        "output": _text_field(raw, "output", problems, required=True, task="instruction"),
    }


def _completion(raw: dict, problems: list[Problem]) -> dict:
    if "prompt" in raw or "completion" in raw:
        prompt = _text_field(raw, "prompt", problems, required=True, task="completion")
        completion = _text_field(raw, "completion", problems, required=True, task="completion")
        return {"prompt": prompt, "completion": completion, "text": None}
    if "text" in raw:
        return {
            "prompt": None,
            "completion": None,
            "text": _text_field(raw, "text", problems, required=True, task="completion"),
        }
    problems.append(
        _missing("completion", "prompt", raw, "'prompt' and 'completion' strings, or a 'text' string")
    )
    return {}


def _classification(raw: dict, problems: list[Problem]) -> dict:
    text = _text_field(raw, "text", problems, required=True, task="classification")
    label = raw.get("label")
    if label is None:
        problems.append(_missing("classification", "label", raw, "a 'label' (a string or an integer)"))
    elif isinstance(label, bool) or not isinstance(label, str | int):
        problems.append(
            ("wrong_type", ERROR, "label", f"'label' must be a string or an integer, not {_type_name(label)}")
        )
    elif isinstance(label, str) and not label.strip():
        problems.append(("missing_field", ERROR, "label", "'label' is empty; every row needs a class"))
    return {"text": text, "label": label}


def _preference(raw: dict, problems: list[Problem]) -> dict:
    return {
        name: _text_field(raw, name, problems, required=True, task="preference")
        for name in ("prompt", "chosen", "rejected")
    }


_NORMALISERS = {
    "chat": _chat,
    "instruction": _instruction,
    "completion": _completion,
    "classification": _classification,
    "preference": _preference,
}


def io_text(row: dict, task_type: str) -> tuple[str, str]:
    """(input text, output text) of a canonical row: what token statistics and duplicate checks see."""
    if task_type == "chat":
        messages = row["messages"]
        prompt = "\n".join(m["content"] for m in messages if m["role"].lower() != "assistant")
        answer = "\n".join(m["content"] for m in messages if m["role"].lower() == "assistant")
        return prompt, answer
    if task_type == "instruction":
        return f"{row['instruction']}\n{row.get('input') or ''}".rstrip("\n"), row["output"]
    if task_type == "completion":
        if row.get("text") is not None:
            return "", row["text"]
        return row["prompt"], row["completion"]
    if task_type == "preference":
        return row["prompt"], row["chosen"]
    return row["text"], str(row["label"])


def text_fields(row: dict, task_type: str) -> list[tuple[str, str]]:
    """(field path, text) of every free-text field, for quality checks."""
    if task_type == "chat":
        return [(f"messages[{i}].content", m["content"]) for i, m in enumerate(row["messages"])]
    return [
        (name, row[name])
        for name in TASK_FIELDS[task_type]
        if isinstance(row.get(name), str) and name != "label"
    ]


def output_field(task_type: str) -> str:
    return {
        "chat": "messages[-1].content",
        "instruction": "output",
        "completion": "completion",
        "classification": "label",
        "preference": "chosen",
    }[task_type]


def arrow_schema(task_type: str, label_type: pa.DataType | None = None) -> pa.Schema:
    if task_type == "classification":
        return pa.schema([("text", pa.string()), ("label", label_type or pa.string())])
    return ARROW_SCHEMAS[task_type]
