"""Dataset version files: one Parquet file per split, written through the `datasets` library into a
staging folder and moved into place only when every file is complete."""

from __future__ import annotations

import hashlib
import shutil
import uuid
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from django.conf import settings

SPLIT_FILES = {"train": "train.parquet", "validation": "validation.parquet", "test": "test.parquet"}
CANONICAL_COLUMNS = {
    "chat": ["messages"],
    "instruction": ["instruction", "input", "output"],
    "completion": ["prompt", "completion", "text"],
    "classification": ["text", "label"],
}


def datasets_root() -> Path:
    return Path(settings.ARTIFACT_ROOT) / "datasets"


def staging_folder() -> Path:
    folder = datasets_root() / f".staging-{uuid.uuid4().hex}"
    folder.mkdir(mode=0o700, parents=True)
    return folder


def _make_private(folder: Path) -> None:
    """Dataset files hold users' data: as private as the configured umask says (settings.UMASK, env
    T4DM_UMASK; by default 077: files 0600, folders 0700), whatever modes the writing library chose.
    A umask of 027 lets the service user's group read them (GPU workers sharing the storage); the
    owner always keeps read and write."""
    umask = getattr(settings, "UMASK", 0o077)
    folder_mode, file_mode = (0o777 & ~umask) | 0o700, (0o666 & ~umask) | 0o600
    folder.chmod(folder_mode)
    for path in folder.rglob("*"):
        path.chmod(folder_mode if path.is_dir() else file_mode)


def write_splits(
    folder: Path, table: pa.Table, split_of: np.ndarray, *, provenance: list[str | None] | None = None
) -> dict[str, dict]:
    """Write each split's rows (in source order) as Parquet; augmented rows carry a provenance column."""
    import datasets
    from datasets.table import InMemoryTable

    datasets.disable_progress_bars()
    if provenance is not None:
        table = table.append_column("provenance", pa.array(provenance, pa.string()))
    splits = {}
    for s, name in enumerate(SPLIT_FILES):
        indices = np.nonzero(split_of == s)[0]
        part = table.take(pa.array(indices)) if indices.size else table.slice(0, 0)
        if name != "train" and "provenance" in part.column_names:
            part = part.drop_columns(["provenance"])
        datasets.Dataset(InMemoryTable(part)).to_parquet(str(folder / SPLIT_FILES[name]))
        splits[name] = {"file": SPLIT_FILES[name], "rows": int(indices.size)}
    return splits


def move_into_place(staging: Path, final: Path) -> None:
    _make_private(staging)
    final.parent.mkdir(parents=True, exist_ok=True)
    if final.exists():
        shutil.rmtree(final)  # a leftover of a failed attempt with the same number: it has no record
    staging.rename(final)


def remove_quietly(*folders: Path | None) -> None:
    for folder in folders:
        if folder is not None and folder.exists():
            shutil.rmtree(folder, ignore_errors=True)


def read_split(folder: str | Path, split: str, file: str) -> pa.Table:
    return pq.read_table(Path(folder) / file)


def read_page(folder: str | Path, file: str, *, offset: int, limit: int) -> tuple[list[dict], int]:
    parquet = pq.ParquetFile(Path(folder) / file)
    total = parquet.metadata.num_rows
    rows: list[dict] = []
    start = 0
    for group in range(parquet.num_row_groups):
        size = parquet.metadata.row_group(group).num_rows
        if start + size > offset and len(rows) < limit:
            table = parquet.read_row_group(group)
            lo = max(0, offset - start)
            rows.extend(table.slice(lo, limit - len(rows)).to_pylist())
        start += size
    return rows, total


def content_hash_of_bytes(content: bytes) -> str:
    return hashlib.sha256(content).hexdigest()


def content_hash_of_stream(stream) -> str:
    """SHA-256 of a binary file object, read in 1 MB chunks; the stream is left at its start."""
    digest = hashlib.sha256()
    stream.seek(0)
    while chunk := stream.read(1 << 20):
        digest.update(chunk)
    stream.seek(0)
    return digest.hexdigest()


def content_hash_of_path(path: Path) -> str:
    digest = hashlib.sha256()
    files = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
    for file in files:
        if path.is_dir():
            digest.update(str(file.relative_to(path)).encode() + b"\0")
        with file.open("rb") as stream:
            while chunk := stream.read(1 << 20):
                digest.update(chunk)
    return digest.hexdigest()


def content_hash_of_table(table: pa.Table, split_of: np.ndarray) -> str:
    import json

    digest = hashlib.sha256()
    for batch in table.to_batches(max_chunksize=10_000):
        for row in batch.to_pylist():
            digest.update(json.dumps(row, sort_keys=True, ensure_ascii=False).encode() + b"\n")
    digest.update(split_of.tobytes())
    return digest.hexdigest()
