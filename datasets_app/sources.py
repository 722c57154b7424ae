"""Read rows from an uploaded file or an import-root path: jsonl, json, csv, parquet, or a folder saved
by `datasets.save_to_disk`. Rows stream: a JSONL file is read line by line, Parquet batch by batch.

Each reader yields `RawRow` (a parsed row) or `RawProblem` (a row that could not be parsed: the reader
goes on with the next one). Problems with the whole file raise `InvalidInput` at once.
"""

from __future__ import annotations

import csv
import io
import json
import unicodedata
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

from django.conf import settings

from t4dm_site.errors import InvalidInput

FORMATS = ("jsonl", "json", "csv", "parquet", "hf")
DEFAULT_MAX_ROW_BYTES = 8 * 1024 * 1024
DEFAULT_MAX_JSON_BYTES = 64 * 1024 * 1024  # a JSON array is parsed at once (~10x in memory): JSONL streams

_MAGIC = [
    (b"\x1f\x8b", "a gzip-compressed file; compressed files are not accepted: decompress it first"),
    (b"PK\x03\x04", "a zip archive; archives are not accepted: extract the file and upload it"),
    (b"BZh", "a bzip2-compressed file; compressed files are not accepted: decompress it first"),
    (b"\xfd7zXZ", "an xz-compressed file; compressed files are not accepted: decompress it first"),
    (b"\x28\xb5\x2f\xfd", "a zstd-compressed file; compressed files are not accepted: decompress it first"),
    (b"\xff\xfe", "UTF-16 text (byte order mark FF FE); save it as UTF-8"),
    (b"\xfe\xff", "UTF-16 text (byte order mark FE FF); save it as UTF-8"),
    (b"%PDF", "a PDF document, not a dataset"),
]


def max_row_bytes() -> int:
    return int(getattr(settings, "DATASET_MAX_ROW_BYTES", DEFAULT_MAX_ROW_BYTES))


DEFAULT_MAX_DECODED_BYTES = 256 * 1024 * 1024


def max_decoded_bytes() -> int:
    return int(getattr(settings, "DATASET_MAX_DECODED_BYTES", DEFAULT_MAX_DECODED_BYTES))


@dataclass(slots=True)
class RawRow:
    row: int
    line: int | None
    value: Any


@dataclass(slots=True)
class RawProblem:
    row: int
    line: int | None
    code: str
    message: str


def fatal(message: str, *, code: str, line: int | None = None, row: int | None = None) -> InvalidInput:
    return InvalidInput(message, code=code, details={"line": line, "row": row})


def _sniff(head: bytes, format: str) -> None:
    """Refuse files whose first bytes say they are not text of the chosen format."""
    if not head.strip():
        raise fatal("the file is empty: it holds no rows", code="empty_dataset")
    if format != "parquet":
        for magic, what in _MAGIC:
            if head.startswith(magic):
                raise fatal(f"this is {what}", code="unsupported_file")
        if head.startswith(b"PAR1"):
            raise fatal(
                f"this is a Parquet file; upload it with format=parquet, not {format}", code="wrong_format"
            )
        nul = head.find(b"\x00", 0, 4096)
        if nul >= 0:
            line = head[:nul].count(b"\n") + 1
            raise fatal(
                f"line {line}: the file holds binary data (a NUL byte), not UTF-8 text",
                code="binary_file",
                line=line,
            )
    elif not head.startswith(b"PAR1"):
        raise fatal(
            "this is not a Parquet file (it does not start with PAR1); choose the format that matches the file",
            code="wrong_format",
        )


def read_rows(source: BinaryIO | Path, format: str) -> Iterator[RawRow | RawProblem]:
    if format not in FORMATS:
        raise InvalidInput(
            f"unknown format {format!r}; choose one of {', '.join(FORMATS)}", code="unknown_format"
        )
    if isinstance(source, Path) and source.is_dir():
        if format != "hf":
            raise fatal(
                f"{source.name} is a folder; folders must be saved by datasets.save_to_disk (format=hf)",
                code="wrong_format",
            )
        yield from _read_hf(source)
        return
    if format == "hf":
        raise fatal("format=hf needs a folder saved by datasets.save_to_disk", code="wrong_format")
    stream = source.open("rb") if isinstance(source, Path) else source
    try:
        head = stream.read(8192)
        size = stream.seek(0, 2)
        stream.seek(0)
        _sniff(head, format)
        limit = max_decoded_bytes()
        if format != "parquet" and size > limit:
            # Text formats decode to about their size (Parquet is measured while it is read).
            raise fatal(
                f"the file has {size} bytes; decoded data exceeds {limit} bytes (T4DM_MAX_DECODED_BYTES, "
                "setting DATASET_MAX_DECODED_BYTES)",
                code="too_large",
            )
        yield from {"jsonl": _read_jsonl, "json": _read_json, "csv": _read_csv, "parquet": _read_parquet}[
            format
        ](stream)
    finally:
        if isinstance(source, Path):
            stream.close()


def _decode(raw: bytes, line: int) -> str:
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise fatal(
            f"line {line}: not UTF-8 text (byte {exc.start + 1} of the line is 0x{raw[exc.start]:02x}); "
            "save the file as UTF-8",
            code="invalid_encoding",
            line=line,
        ) from None


def _read_jsonl(stream: BinaryIO) -> Iterator[RawRow | RawProblem]:
    limit = max_row_bytes()
    row = 0
    for line_no, raw in enumerate(_lines(stream, limit), start=1):
        if line_no == 1 and raw.startswith(b"\xef\xbb\xbf"):
            raw = raw[3:]  # a UTF-8 byte order mark is harmless
        text = _decode(raw, line_no)
        if not text.strip():
            continue
        row += 1
        try:
            value = json.loads(text)
        except RecursionError:
            yield RawProblem(row, line_no, "invalid_json", "the JSON nests too deeply to read")
            continue
        except json.JSONDecodeError as exc:
            hint = ""
            if row == 1 and text.lstrip().startswith("["):
                hint = "; the file looks like a JSON array: upload it with format=json"
            yield RawProblem(
                row, line_no, "invalid_json", f"not valid JSON: {exc.msg} at column {exc.colno}{hint}"
            )
            continue
        yield RawRow(row, line_no, value)


def _lines(stream: BinaryIO, limit: int) -> Iterator[bytes]:
    """Lines of a binary stream, refusing one longer than `limit` without holding more than it."""
    line_no = 0
    while True:
        raw = stream.readline(limit + 1)
        if not raw:
            return
        line_no += 1
        if len(raw) > limit and not raw.endswith(b"\n"):
            raise fatal(
                f"line {line_no} is longer than {limit // (1024 * 1024)} MB; one row must stay under that "
                "(split the text into several rows)",
                code="row_too_large",
                line=line_no,
            )
        yield raw


def _read_json(stream: BinaryIO) -> Iterator[RawRow | RawProblem]:
    data = stream.read(DEFAULT_MAX_JSON_BYTES + 1)
    if len(data) > DEFAULT_MAX_JSON_BYTES:
        raise fatal(
            "a JSON document over 64 MB cannot be read at once: use JSONL (one row per line)",
            code="file_too_large",
        )
    if data.startswith(b"\xef\xbb\xbf"):
        data = data[3:]
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        raise fatal(
            f"line {line}: not UTF-8 text; save the file as UTF-8", code="invalid_encoding", line=line
        ) from None
    try:
        doc = json.loads(text)
    except RecursionError:
        raise fatal("the JSON nests too deeply to read", code="invalid_json") from None
    except json.JSONDecodeError as exc:
        hint = ""
        if exc.msg == "Extra data":
            hint = "; it looks like JSON Lines: upload it with format=jsonl"
        raise fatal(
            f"line {exc.lineno}: not valid JSON: {exc.msg} at column {exc.colno}{hint}",
            code="invalid_json",
            line=exc.lineno,
        ) from None
    if isinstance(doc, dict):
        for key in ("data", "rows", "examples"):
            if isinstance(doc.get(key), list):
                doc = doc[key]
                break
    if not isinstance(doc, list):
        raise fatal('a JSON file must hold an array of rows (or {"data": [...]})', code="invalid_structure")
    for index, value in enumerate(doc, start=1):
        yield RawRow(index, None, value)


_CSV_JSON_COLUMNS = ("messages",)


def _read_csv(stream: BinaryIO) -> Iterator[RawRow | RawProblem]:
    limit = max_row_bytes()
    csv.field_size_limit(limit)
    text = io.TextIOWrapper(stream, encoding="utf-8-sig", newline="")
    reader = csv.reader(text, strict=True)
    try:
        header = next(reader)
    except UnicodeDecodeError:
        raise fatal(
            "line 1: not UTF-8 text; save the file as UTF-8", code="invalid_encoding", line=1
        ) from None
    except csv.Error as exc:
        raise fatal(f"line 1: the CSV header cannot be read ({exc})", code="invalid_csv", line=1) from None
    header = [h.strip() for h in header]
    if not any(header):
        raise fatal("line 1: the CSV file needs a header row naming its columns", code="invalid_csv", line=1)
    if len(set(header)) != len(header):
        raise fatal(
            f"line 1: the CSV header repeats a column name ({', '.join(header)})", code="invalid_csv", line=1
        )
    row = 0
    while True:
        line = reader.line_num + 1
        try:
            record = next(reader)
        except StopIteration:
            break
        except UnicodeDecodeError:
            raise fatal(
                f"line {line}: not UTF-8 text; save the file as UTF-8", code="invalid_encoding", line=line
            ) from None
        except csv.Error as exc:
            raise fatal(
                f"line {line}: the CSV cannot be read ({exc})", code="invalid_csv", line=line
            ) from None
        if not record or not any(cell.strip() for cell in record):
            continue
        row += 1
        if len(record) != len(header):
            yield RawProblem(
                row,
                line,
                "ragged_row",
                f"has {len(record)} columns but the header has {len(header)} ({', '.join(header)})",
            )
            continue
        value: dict[str, Any] = dict(zip(header, record, strict=True))
        for column in _CSV_JSON_COLUMNS:
            if column in value:
                try:
                    value[column] = json.loads(value[column])
                except json.JSONDecodeError as exc:
                    yield RawProblem(
                        row, line, "invalid_json", f"column '{column}' must hold JSON: {exc.msg}"
                    )
                    break
        else:
            if "label" in value and value["label"].strip().lstrip("-").isdigit():
                value["label"] = int(value["label"])
            yield RawRow(row, line, value)


PARQUET_BATCH_ROWS = 256  # rows materialised at a time (one at a time when they are large)
PARQUET_MEASURE_ROWS = 8192
PARQUET_FAST_WINDOW_BYTES = 16 * 1024 * 1024
_BINARY_CHECKS = ("is_string", "is_large_string", "is_binary", "is_large_binary")


def _decoded_size(array) -> int:
    """Bytes `array` takes once every dictionary is expanded (what to_pylist materialises), computed
    without expanding: each dictionary entry the rows use is measured once and counted per use."""
    import pyarrow as pa
    import pyarrow.compute as pc

    if isinstance(array, pa.ChunkedArray):
        return sum(_decoded_size(chunk) for chunk in array.chunks)
    kind = array.type
    if pa.types.is_dictionary(kind):
        if len(array) == 0:
            return 0
        counted = pc.value_counts(array.indices)
        used, uses = counted.field("values"), counted.field("counts")
        values = pc.take(array.dictionary, used)  # each used entry once (already in memory, once)
        if any(getattr(pa.types, check)(values.type) for check in _BINARY_CHECKS):
            lengths = pc.binary_length(values)
        else:
            lengths = pa.array([_decoded_size(values.slice(i, 1)) for i in range(len(values))], pa.int64())
        total = pc.sum(pc.multiply(pc.cast(lengths, pa.int64()), uses)).as_py() or 0
        return int(total) + array.indices.nbytes
    if pa.types.is_list(kind) or pa.types.is_large_list(kind) or pa.types.is_fixed_size_list(kind):
        return 8 * (len(array) + 1) + _decoded_size(array.flatten())
    if pa.types.is_struct(kind):
        return len(array) + sum(_decoded_size(child) for child in array.flatten())
    if pa.types.is_map(kind):
        return 8 * (len(array) + 1) + _decoded_size(array.keys) + _decoded_size(array.items)
    return array.nbytes


def _plain_type(kind):
    """`kind` with every dictionary replaced by its value type (what the rows decode to)."""
    import pyarrow as pa

    if pa.types.is_dictionary(kind):
        return _plain_type(kind.value_type)
    if pa.types.is_list(kind):
        return pa.list_(kind.value_field.with_type(_plain_type(kind.value_type)))
    if pa.types.is_large_list(kind):
        return pa.large_list(kind.value_field.with_type(_plain_type(kind.value_type)))
    if pa.types.is_fixed_size_list(kind):
        return pa.list_(kind.value_field.with_type(_plain_type(kind.value_type)), kind.list_size)
    if pa.types.is_struct(kind):
        return pa.struct(
            [kind.field(i).with_type(_plain_type(kind.field(i).type)) for i in range(kind.num_fields)]
        )
    return kind


def _byte_array_columns(parquet) -> list[str]:
    """Leaf paths of every string/binary column: read as dictionaries, so reading never expands them."""
    return [
        parquet.schema.column(i).path
        for i in range(len(parquet.schema))
        if parquet.schema.column(i).physical_type == "BYTE_ARRAY"
    ]


def _too_large(limit: int, row: int | None = None) -> InvalidInput:
    where = f"row {row}: " if row else ""
    return fatal(
        f"{where}decoded data exceeds {limit} bytes (T4DM_MAX_DECODED_BYTES, setting DATASET_MAX_DECODED_BYTES); "
        "the file's rows take more than that once decompressed and expanded",
        code="too_large",
        row=row,
    )


def _read_parquet(stream: BinaryIO) -> Iterator[RawRow | RawProblem]:
    """Parquet, with a hard cap on DECODED bytes. Dictionary-encoded columns expand: 817 bytes on disk can
    be gigabytes of rows, and pyarrow's footer sizes and batch.nbytes count a dictionary once. So every
    string column is read as a dictionary (never expanded by the reader), a first pass adds up the
    expanded size of every row without materialising any, and the second pass turns small batches into
    rows, one row at a time where a batch is large."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    limit = max_decoded_bytes()
    row_limit = max_row_bytes()
    try:
        probe = pq.ParquetFile(stream)
        declared = sum(
            probe.metadata.row_group(g).total_byte_size for g in range(probe.metadata.num_row_groups)
        )
        if declared > limit:
            raise _too_large(limit)
        stream.seek(0)
        parquet = pq.ParquetFile(stream, read_dictionary=_byte_array_columns(probe))
    except (pa.ArrowException, OSError, ValueError) as exc:
        raise fatal(f"the Parquet file cannot be read: {exc}", code="invalid_parquet") from None
    row = 0
    try:
        total = largest = 0
        for batch in parquet.iter_batches(batch_size=PARQUET_MEASURE_ROWS):  # nothing expanded: large batches
            size = sum(_decoded_size(column) for column in batch.columns)
            total, largest = total + size, max(largest, size)
            row += batch.num_rows
            if total > limit:
                raise _too_large(limit)
        row = 0
        plain = pa.schema([field.with_type(_plain_type(field.type)) for field in parquet.schema_arrow])
        if largest <= PARQUET_FAST_WINDOW_BYTES:
            # Every window of PARQUET_MEASURE_ROWS rows decodes to little: read them plainly (fast).
            stream.seek(0)
            for batch in pq.ParquetFile(stream).iter_batches(batch_size=PARQUET_MEASURE_ROWS):
                for value in batch.cast(plain).to_pylist():
                    row += 1
                    yield RawRow(row, None, value)
            return
        for batch in parquet.iter_batches(batch_size=PARQUET_BATCH_ROWS):
            size = sum(_decoded_size(column) for column in batch.columns)
            if size <= row_limit:
                values = batch.cast(plain).to_pylist()
            else:  # check each row's size first, then materialise one row at a time
                for i in range(batch.num_rows):
                    one = batch.slice(i, 1)
                    if sum(_decoded_size(column) for column in one.columns) > row_limit:
                        raise fatal(
                            f"row {row + i + 1} decodes to more than {row_limit // (1024 * 1024)} MB; one row "
                            "must stay under that",
                            code="row_too_large",
                            row=row + i + 1,
                        )
                values = (batch.slice(i, 1).cast(plain).to_pylist()[0] for i in range(batch.num_rows))
            for value in values:
                row += 1
                yield RawRow(row, None, value)
    except (pa.ArrowException, OSError) as exc:
        raise fatal(
            f"row {row + 1}: the Parquet file is damaged: {exc}", code="invalid_parquet", row=row + 1
        ) from None


def _read_hf(folder: Path) -> Iterator[RawRow | RawProblem]:
    import datasets

    try:
        loaded = datasets.load_from_disk(str(folder))
    except Exception as exc:  # datasets raises FileNotFoundError/ValueError/… for foreign folders
        raise fatal(
            f"{folder.name} is not a folder saved by datasets.save_to_disk: {exc}", code="invalid_hf_folder"
        ) from None
    parts = list(loaded.values()) if isinstance(loaded, datasets.DatasetDict) else [loaded]
    limit = max_decoded_bytes()
    decoded = sum(_decoded_size(column) for part in parts for column in part.data.table.columns)
    if decoded > limit:
        raise _too_large(limit)
    row = 0
    for part in parts:
        for batch in part.data.to_batches(max_chunksize=PARQUET_BATCH_ROWS):
            for value in batch.to_pylist():
                row += 1
                yield RawRow(row, None, value)


MAX_NAME_LENGTH = 200


def _control_characters(text: str) -> list[str]:
    """Control and format characters (newlines, ESC, NUL, bidi overrides such as U+202E)."""
    return sorted({f"U+{ord(ch):04X}" for ch in text if unicodedata.category(ch) in ("Cc", "Cf")})


def check_name(name: str, what: str = "name") -> str:
    """A dataset or file name as a person sees it: printable and at most MAX_NAME_LENGTH characters."""
    bad = _control_characters(name)
    if bad:
        raise InvalidInput(
            f"the {what} holds control characters ({', '.join(bad)}); rename it", code="invalid_name"
        )
    if len(name) > MAX_NAME_LENGTH:
        raise InvalidInput(
            f"the {what} has {len(name)} characters; the limit is {MAX_NAME_LENGTH}", code="invalid_name"
        )
    return name


def resolve_import_path(path: str) -> Path:
    """A path under settings.IMPORT_ROOT; anything outside it (.., absolute, symlinks) is refused."""
    if _control_characters(path):
        raise InvalidInput(f"the path {path!r} holds control characters", code="invalid_path")
    root = Path(settings.IMPORT_ROOT).resolve()
    candidate = Path(path)
    if not candidate.is_absolute():
        candidate = root / candidate
    resolved = candidate.resolve()
    if not resolved.is_relative_to(root):
        raise InvalidInput(
            f"{path} is outside the import root {root}; copy the file under it (symlinks out of it are refused)",
            code="path_outside_import_root",
        )
    if not resolved.exists():
        raise InvalidInput(f"{path} does not exist under the import root {root}", code="path_not_found")
    return resolved
