from __future__ import annotations

import json

import pytest


def chat(q: str, a: str, system: str | None = None) -> dict:
    messages = ([{"role": "system", "content": system}] if system else []) + [
        {"role": "user", "content": q},
        {"role": "assistant", "content": a},
    ]
    return {"messages": messages}


def jsonl(rows) -> bytes:
    return "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows).encode()


def distinct_chat_rows(n: int) -> list[dict]:
    words = "alpha bravo charlie delta echo foxtrot golf hotel india juliet kilo lima mike november oscar papa".split()
    rows = []
    for i in range(n):
        a, b, c = words[i % 16], words[(i // 16) % 16], words[(i * 7) % 16]
        rows.append(
            chat(
                f"Question {i}: what links {a} and {b} in case {c}?", f"Answer number {i} is {b} {a} {i * 3}."
            )
        )
    return rows


@pytest.fixture
def import_root(settings, tmp_path):
    root = tmp_path / "imports"
    root.mkdir()
    settings.IMPORT_ROOT = root
    return root
