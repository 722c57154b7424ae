"""The bad-input corpus, generated rather than committed: each kind is (format, task_type, bytes,
the place the error must name). `where` is a regex the error message must match, e.g. r"^line 3:"."""

from __future__ import annotations

import gzip
import io
import json
import random
import zipfile
from collections.abc import Callable
from dataclasses import dataclass

GOOD = {
    "messages": [
        {"role": "user", "content": "What is T4DM?"},
        {"role": "assistant", "content": "A platform."},
    ]
}


def _line(row) -> bytes:
    return (json.dumps(row) + "\n").encode()


def _good(n: int = 2) -> bytes:
    return _line(GOOD) * n


def _msgs(*pairs) -> dict:
    return {"messages": [{"role": r, "content": c} for r, c in pairs]}


def _parquet(rows) -> bytes:
    import pyarrow as pa
    import pyarrow.parquet as pq

    out = io.BytesIO()
    pq.write_table(pa.Table.from_pylist(rows), out)
    return out.getvalue()


def _zip() -> bytes:
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("data.jsonl", b"0" * 10_000_000)  # 10 MB that compress to a few KB
    return out.getvalue()


def _binary() -> bytes:
    rng = random.Random(3)
    return bytes(rng.randrange(256) for _ in range(4096)) + b"\x00\x00"


@dataclass
class Bad:
    kind: str
    make: Callable[[], bytes]
    where: str
    format: str = "jsonl"
    task_type: str = "chat"


CORPUS = [
    Bad(
        "truncated JSON line",
        lambda: _good() + b'{"messages": [{"role": "user", "con',
        r"^line 3: not valid JSON",
    ),
    Bad("plain text line", lambda: _good(1) + b"hello world\n", r"^line 2: not valid JSON"),
    Bad(
        "JSON array uploaded as JSONL",
        lambda: b"[\n" + json.dumps(GOOD).encode() + b"\n]\n",
        r"^line 1: .*format=json",
    ),
    Bad("JSONL uploaded as JSON", lambda: _good(3), r"^line 2: .*format=jsonl", "json"),
    Bad("truncated JSON document", lambda: b'[\n  {"messages": [\n', r"^line 3: not valid JSON", "json"),
    Bad("JSON document that is not an array", lambda: b'{"messages": 1}', r"array of rows", "json"),
    Bad(
        "Latin-1 encoding",
        lambda: _good(1) + '{"messages": "café"}\n'.encode("latin-1"),
        r"^line 2: not UTF-8",
    ),
    Bad("UTF-16 with BOM", lambda: b"\xff\xfe" + _good(2).decode().encode("utf-16-le"), r"UTF-16.*UTF-8"),
    Bad("empty file", lambda: b"", r"empty"),
    Bad("only blank lines", lambda: b"\n  \n\t\n", r"empty"),
    Bad("binary garbage", _binary, r"binary data"),
    Bad("gzip-compressed JSONL", lambda: gzip.compress(_good(100)), r"gzip.*not accepted"),
    Bad("zip bomb-like archive", _zip, r"zip archive.*not accepted"),
    Bad(
        "50 MB single line",
        lambda: b'{"messages": [{"role": "user", "content": "' + b"a" * 50_000_000 + b'"}]}\n',
        r"^line 1 is longer than",
    ),
    Bad(
        "deeply nested JSON",
        lambda: _good(1) + b"[" * 100_000 + b"]" * 100_000 + b"\n",
        r"^line 2: the JSON nests too deeply",
    ),
    Bad(
        "unknown role",
        lambda: _good(1) + _line(_msgs(("user", "hi"), ("bot", "yo"))),
        r"^line 2: messages\[1\]\.role is 'bot'",
    ),
    Bad(
        "roles out of order",
        lambda: _good(1) + _line(_msgs(("user", "hi"), ("user", "again"), ("assistant", "yo"))),
        r"^line 2: roles are user → user → assistant",
    ),
    Bad(
        "conversation ending with user",
        lambda: _good(2) + _line(_msgs(("user", "hi"), ("assistant", "yo"), ("user", "?"))),
        r"^line 3: roles are",
    ),
    Bad(
        "system message in the middle",
        lambda: _line(_msgs(("user", "hi"), ("system", "x"), ("assistant", "yo"))),
        r"^line 1: roles are",
    ),
    Bad(
        "messages not a list",
        lambda: _good(1) + b'{"messages": "hi"}\n',
        r"^line 2: 'messages' must be a non-empty list",
    ),
    Bad(
        "content not a string",
        lambda: (
            _good(1)
            + _line({"messages": [{"role": "user", "content": 5}, {"role": "assistant", "content": "x"}]})
        ),
        r"^line 2: messages\[0\]\.content must be a string",
    ),
    Bad("row not an object", lambda: _good(1) + b"[1, 2]\n", r"^line 2: each row must be a JSON object"),
    Bad(
        "mixed formats (instruction row in a chat file)",
        lambda: _good(1) + _line({"instruction": "a", "output": "b"}),
        r"^line 2: .*task_type=instruction",
    ),
    Bad(
        "classification label missing",
        lambda: _line({"text": "ok", "label": "a"}) * 2 + _line({"text": "no label"}),
        r"^line 3: classification rows need a 'label'",
        "jsonl",
        "classification",
    ),
    Bad(
        "classification label of a wrong type",
        lambda: _line({"text": "ok", "label": "a"}) + _line({"text": "x", "label": [1]}),
        r"^line 2: 'label' must be a string or an integer",
        "jsonl",
        "classification",
    ),
    Bad(
        "labels mixing numbers and text",
        lambda: _line({"text": "ok", "label": 1}) + _line({"text": "x", "label": "two"}),
        r"^line 2: labels mix numbers and text",
        "jsonl",
        "classification",
    ),
    Bad(
        "CSV with a ragged row",
        lambda: b"text,label\nfine,a\nbroken,b,extra\n",
        r"^line 3: has 3 columns",
        "csv",
        "classification",
    ),
    Bad(
        "CSV with an unterminated quote",
        lambda: b'text,label\nfine,a\n"open quote,b\n',
        r"^line 3: the CSV cannot be read",
        "csv",
        "classification",
    ),
    Bad(
        "CSV without the needed column",
        lambda: b"body,category\nhello,a\n",
        r"^line 2: classification rows need a 'text'",
        "csv",
        "classification",
    ),
    Bad(
        "CSV with bad JSON in messages",
        lambda: b'messages\n"[{""role"": ""user""}"\n',
        r"^line 2: column 'messages' must hold JSON",
        "csv",
    ),
    Bad("Parquet chosen for a JSONL file", lambda: _good(2), r"not a Parquet file", "parquet"),
    Bad(
        "Parquet uploaded as JSONL", lambda: _parquet([GOOD]), r"Parquet file; upload it with format=parquet"
    ),
    Bad("truncated Parquet", lambda: _parquet([GOOD] * 50)[:300], r"Parquet file cannot be read", "parquet"),
    Bad(
        "Parquet with wrong roles",
        lambda: _parquet([GOOD, _msgs(("assistant", "x"), ("user", "y"))]),
        r"^row 2: roles are",
        "parquet",
    ),
    Bad(
        "unpaired surrogate",
        lambda: (
            _good(1)
            + b'{"messages": [{"role": "user", "content": "\\ud800"}, {"role": "assistant", "content": "x"}]}\n'
        ),
        r"^line 2: the text holds an unpaired surrogate",
    ),
    Bad(
        "instruction output missing",
        lambda: _line({"instruction": "a", "output": "b"}) + _line({"instruction": "a"}),
        r"^line 2: instruction rows need a 'output'",
        "jsonl",
        "instruction",
    ),
    Bad(
        "completion with neither prompt nor text",
        lambda: _line({"prompt": "a", "completion": "b"}) + _line({"body": "x"}),
        r"^line 2: completion rows need",
        "jsonl",
        "completion",
    ),
]


def parquet_bomb(chat: bool = False) -> bytes:
    """One 250 KB value shared by 10,000 rows through a dictionary: ~800 bytes on disk, 2.5 GB decoded.
    `chat`: list<struct<role, content>> rows, every content the one shared value."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    value = pa.array(["x" * 250_000])
    if chat:
        content = pa.DictionaryArray.from_arrays(pa.array([0] * 20_000, pa.int32()), value)
        role = pa.array(["user", "assistant"] * 10_000)
        messages = pa.StructArray.from_arrays([role, content], names=["role", "content"])
        offsets = pa.array(range(0, 20_001, 2), pa.int32())
        table = pa.table({"messages": pa.ListArray.from_arrays(offsets, messages)})
    else:
        shared = pa.DictionaryArray.from_arrays(pa.array([0] * 10_000, pa.int32()), value)
        table = pa.table({"prompt": shared, "completion": shared})
    out = io.BytesIO()
    pq.write_table(table, out, compression="zstd")
    return out.getvalue()
