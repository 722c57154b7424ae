"""The streaming core of prepare/validate: parse → check rows → measure → split → dataset-level checks.

Rows are checked and measured in batches and kept as Arrow record batches (columnar, compact), so a
million-row file needs memory for its text once, not for a million Python dicts.
"""

from __future__ import annotations

import hashlib
import re
import unicodedata
from array import array
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field

import numpy as np
import pyarrow as pa

from datasets_app.issues import ERROR, INFO, WARNING, IssueLog, where
from datasets_app.rows import arrow_schema, io_text, normalise_row, output_field, text_fields
from datasets_app.sources import RawProblem, RawRow
from datasets_app.tokens import count_tokens, describe, histogram

BATCH = 10_000
BATCH_CHARS = 8 * 1024 * 1024
SPLITS = ("train", "validation", "test")
DEFAULT_FRACTIONS = {"train": 0.8, "validation": 0.1, "test": 0.1}
NEAR_DUPLICATE_THRESHOLD = 0.8
NEAR_DUPLICATE_MAX_ROWS = 20_000  # MinHash runs on at most this many rows (evaluation rows first)

_REPEATED = re.compile(r"(\S)\1{19,}")
_HTML = re.compile(
    r"</?(?:p|div|br|span|a|b|i|em|strong|ul|ol|li|html|body|head|table|tr|td|th|img|script|style|h[1-6])\b[^>]*>|&(?:nbsp|amp|lt|gt|quot|#\d+);",
    re.I,
)
_UNTIDY = re.compile(r"^\s|\s$|[ \t]{2,}|\r")


def normalise_text(text: str) -> str:
    """What duplicate checks compare: Unicode NFKC, case-folded, whitespace collapsed."""
    if not text.isascii():
        text = unicodedata.normalize("NFKC", text)
    return " ".join(text.casefold().split())


def _hash(text: str) -> int:
    return int.from_bytes(hashlib.blake2b(text.encode("utf-8"), digest_size=8).digest(), "little")


@dataclass
class Collected:
    task_type: str
    table: pa.Table
    rows: np.ndarray  # source row number of each table row
    lines: np.ndarray  # source line number (0 where the source has no lines)
    in_tokens: np.ndarray
    out_tokens: np.ndarray
    hashes: np.ndarray
    labels: list = field(default_factory=list)
    issues: IssueLog = field(default_factory=IssueLog)

    @property
    def n(self) -> int:
        return self.table.num_rows


def collect(
    items: Iterable[RawRow | RawProblem],
    *,
    task_type: str,
    tokenizer,
    issues: IssueLog,
    schema: dict | None = None,
    max_errors: int = 1000,
) -> Collected:
    validator = _schema_validator(schema)
    batches: list[pa.RecordBatch] = []
    rows = array("q")
    lines = array("q")
    in_tokens: list[np.ndarray] = []
    out_tokens: list[np.ndarray] = []
    hashes = array("Q")
    texts: list[str] = []
    labels: list = []
    pending: list[dict] = []
    schema_arrow = arrow_schema(task_type)
    pending_chars = [0]  # text held by `pending`: a batch is also flushed by size, not only by rows

    def flush() -> None:
        pending_chars[0] = 0
        if not pending:
            return
        pairs = [io_text(r, task_type) for r in pending]
        try:
            batch_hashes = [_hash(normalise_text(p) + "\x1f" + normalise_text(a)) for p, a in pairs]
        except UnicodeEncodeError:
            batch_hashes = _drop_unencodable(pairs)
            if not pending:
                return
        in_tokens.append(count_tokens(tokenizer, [p for p, _ in pairs]))
        out_tokens.append(count_tokens(tokenizer, [a for _, a in pairs]))
        hashes.extend(batch_hashes)
        if task_type == "classification":
            texts.extend(r["text"] for r in pending)
            labels.extend(r["label"] for r in pending)
        else:
            batches.append(pa.RecordBatch.from_pylist(pending, schema=schema_arrow))
        pending.clear()

    def _drop_unencodable(pairs: list[tuple[str, str]]) -> list[int]:
        """Rows with unpaired surrogates (possible in JSON escapes) cannot be stored as UTF-8."""
        base = len(rows) - len(pending)
        keep, kept_hashes = [], []
        for k, (p, a) in enumerate(pairs):
            try:
                kept_hashes.append(_hash(normalise_text(p) + "\x1f" + normalise_text(a)))
                keep.append(k)
            except UnicodeEncodeError:
                r, ln = rows[base + k], lines[base + k] or None
                issues.add(
                    "invalid_unicode",
                    ERROR,
                    f"{where(r, ln)}: the text holds an unpaired surrogate (\\ud800–\\udfff) that is not valid Unicode",
                    row=r,
                    line=ln,
                )
        for k in sorted(set(range(len(pairs))) - set(keep), reverse=True):
            del pending[k], rows[base + k], lines[base + k]
            pairs.pop(k)
        return kept_hashes

    for item in items:
        if isinstance(item, RawProblem):
            issues.add(
                item.code,
                ERROR,
                f"{where(item.row, item.line)}: {item.message}",
                row=item.row,
                line=item.line,
            )
        else:
            if validator is not None:
                for error in validator.iter_errors(item.value):
                    issues.add(
                        "schema_violation",
                        ERROR,
                        f"{where(item.row, item.line)}: {error.json_path}: {error.message}",
                        row=item.row,
                        line=item.line,
                        field=error.json_path,
                    )
            row, problems = normalise_row(item.value, task_type)
            for code, severity, field_name, message in problems:
                issues.add(
                    code,
                    severity,
                    f"{where(item.row, item.line)}: {message}",
                    row=item.row,
                    line=item.line,
                    field=field_name,
                )
            if row is not None:
                index = len(rows)
                rows.append(item.row)
                lines.append(item.line or 0)
                _quality(row, task_type, issues, item.row, item.line, index)
                pending.append(row)
                pending_chars[0] += sum(len(text) for _, text in text_fields(row, task_type))
                if len(pending) >= BATCH or pending_chars[0] >= BATCH_CHARS:
                    flush()
        if issues.error_count >= max_errors:
            issues.add("too_many_errors", ERROR, f"stopped after {max_errors} errors; fix these first")
            break
    flush()
    if task_type == "classification":
        table = _classification_table(texts, labels, rows, lines, issues)
    else:
        table = pa.Table.from_batches(batches, schema=schema_arrow)
    return Collected(
        task_type=task_type,
        table=table,
        rows=np.frombuffer(rows, dtype=np.int64) if rows else np.zeros(0, np.int64),
        lines=np.frombuffer(lines, dtype=np.int64) if lines else np.zeros(0, np.int64),
        in_tokens=np.concatenate(in_tokens) if in_tokens else np.zeros(0, np.int32),
        out_tokens=np.concatenate(out_tokens) if out_tokens else np.zeros(0, np.int32),
        hashes=np.frombuffer(hashes, dtype=np.uint64) if hashes else np.zeros(0, np.uint64),
        labels=labels,
        issues=issues,
    )


def _classification_table(texts, labels, rows, lines, issues: IssueLog) -> pa.Table:
    kinds = {type(label) for label in labels}
    if len(kinds) > 1:
        first_int = next(i for i, label in enumerate(labels) if isinstance(label, int))
        first_str = next(i for i, label in enumerate(labels) if isinstance(label, str))
        later = max(first_int, first_str)
        issues.add(
            "mixed_label_types",
            ERROR,
            f"{where(rows[later], lines[later])}: labels mix numbers and text (row {rows[first_int]} has "
            f"{labels[first_int]!r}, row {rows[first_str]} has {labels[first_str]!r}); use one kind",
            row=rows[later],
            line=lines[later] or None,
            field="label",
        )
        labels = [str(label) for label in labels]
    label_type = pa.int64() if labels and isinstance(labels[0], int) else pa.string()
    return pa.table({"text": pa.array(texts, pa.string()), "label": pa.array(labels, label_type)})


def _schema_validator(schema: dict | None):
    if schema is None:
        return None
    import jsonschema

    from t4dm_site.errors import InvalidInput

    try:
        cls = jsonschema.validators.validator_for(schema)
        cls.check_schema(schema)
    except jsonschema.SchemaError as exc:
        raise InvalidInput(
            f"the JSON Schema itself is invalid: {exc.message}", code="invalid_schema"
        ) from None
    return cls(schema)


def _quality(row: dict, task_type: str, issues: IssueLog, row_no: int, line: int | None, index: int) -> None:
    at = where(row_no, line)
    for name, text in text_fields(row, task_type):
        if _REPEATED.search(text):
            issues.add(
                "repeated_characters",
                WARNING,
                f"{at}: {name} repeats one character 20+ times",
                row=row_no,
                line=line,
                field=name,
                index=index,
            )
        if _HTML.search(text):
            issues.add(
                "html_markup",
                WARNING,
                f"{at}: {name} holds leftover HTML tags or entities",
                row=row_no,
                line=line,
                field=name,
                index=index,
            )
        if not text.isascii():
            import ftfy

            if ftfy.is_bad(text):
                issues.add(
                    "mojibake",
                    WARNING,
                    f"{at}: {name} looks like broken encoding (mojibake, e.g. 'Ã©' for 'é'); clean_dataset repairs it",
                    row=row_no,
                    line=line,
                    field=name,
                    index=index,
                )
            elif unicodedata.normalize("NFC", text) != text:
                issues.add(
                    "unicode_not_normalised",
                    INFO,
                    f"{at}: {name} is not in Unicode NFC form; clean_dataset normalises it",
                    row=row_no,
                    line=line,
                    field=name,
                    index=index,
                )
        if text and _UNTIDY.search(text):
            issues.add(
                "untidy_whitespace",
                INFO,
                f"{at}: {name} has leading/trailing or repeated whitespace; clean_dataset tidies it",
                row=row_no,
                line=line,
                field=name,
                index=index,
            )
    if task_type != "classification":
        output = io_text(row, task_type)[1].strip()
        if output and len(output) < 3:
            issues.add(
                "short_output",
                WARNING,
                f"{at}: the output {output!r} is very short ({len(output)} characters)",
                row=row_no,
                line=line,
                field=output_field(task_type),
                index=index,
            )


# --- splits ------------------------------------------------------------------------------------------


def parse_fractions(fractions: dict[str, float] | None) -> dict[str, float]:
    from t4dm_site.errors import InvalidInput

    if not fractions:
        return dict(DEFAULT_FRACTIONS)
    unknown = set(fractions) - set(SPLITS)
    if unknown:
        raise InvalidInput(
            f"unknown split names {sorted(unknown)}; use train, validation and test", code="invalid_split"
        )
    result = {name: float(fractions.get(name, 0.0)) for name in SPLITS}
    if any(v < 0 for v in result.values()) or abs(sum(result.values()) - 1.0) > 1e-6 or result["train"] <= 0:
        raise InvalidInput(
            f"split fractions must be ≥ 0, train > 0, and add up to 1 (got {result})", code="invalid_split"
        )
    return result


def split_assignment(
    n: int, fractions: dict[str, float], seed: int, labels: list | None = None
) -> np.ndarray:
    """Split id (0 train, 1 validation, 2 test) of each row: deterministic for a seed, stratified by label."""
    from t4dm_site.errors import InvalidInput

    rng = np.random.default_rng(seed)
    split_of = np.zeros(n, dtype=np.int8)
    groups: list[np.ndarray]
    if labels:
        by_label: dict = {}
        for i, label in enumerate(labels):
            by_label.setdefault(label, []).append(i)
        groups = [np.asarray(by_label[k], dtype=np.int64) for k in sorted(by_label, key=str)]
    else:
        groups = [np.arange(n, dtype=np.int64)]
    for group in groups:
        order = rng.permutation(group)
        n_val = int(round(len(order) * fractions["validation"]))
        n_test = int(round(len(order) * fractions["test"]))
        if len(groups) > 1 and len(order) - n_val - n_test < 1:
            n_val, n_test = (0, 0) if len(order) < 2 else (min(n_val, 1), 0)
        split_of[order[len(order) - n_val - n_test : len(order) - n_test]] = 1
        split_of[order[len(order) - n_test :]] = 2
    if n and not (split_of == 0).any():
        raise InvalidInput(f"{n} rows are too few to split {fractions}", code="too_few_rows")
    return split_of


# --- dataset-level checks ------------------------------------------------------------------------------


def _ref(c: Collected, i: int, split_of: np.ndarray | None, split_pos: np.ndarray | None) -> dict:
    ref = {"row": int(c.rows[i]), "line": int(c.lines[i]) or None}
    if split_of is not None:
        ref["split"] = SPLITS[split_of[i]]
        ref["split_row"] = int(split_pos[i]) + 1
    return ref


def split_positions(split_of: np.ndarray) -> np.ndarray:
    pos = np.zeros(len(split_of), dtype=np.int64)
    for s in range(3):
        idx = np.nonzero(split_of == s)[0]
        pos[idx] = np.arange(len(idx))
    return pos


def dataset_checks(
    c: Collected,
    *,
    split_of: np.ndarray | None,
    max_length: int,
    fractions: dict[str, float] | None = None,
) -> None:
    issues = c.issues
    pos = split_positions(split_of) if split_of is not None else None
    # Per-row issues were found before the split: say where each row landed.
    if split_of is not None:
        for issue in issues.kept:
            index = issue.pop("index", None)
            if index is not None:
                issue["split"], issue["split_row"] = SPLITS[split_of[index]], int(pos[index]) + 1
    else:
        for issue in issues.kept:
            issue.pop("index", None)

    for i, j in _duplicates_of_first(c.hashes):
        a, b = _ref(c, j, split_of, pos), _ref(c, i, split_of, pos)
        if split_of is not None and split_of[i] != split_of[j]:
            issues.add(
                "leakage_exact",
                WARNING,
                f"{where(b['row'], b['line'])} ({b['split']}) is the same sample as {where(a['row'], a['line'])} "
                f"({a['split']}): evaluation would score memorised rows; clean_dataset removes duplicates",
                row=b["row"],
                line=b["line"],
                split=b.get("split"),
                split_row=b.get("split_row"),
                pair=[a, b],
            )
        else:
            issues.add(
                "duplicate",
                WARNING,
                f"{where(b['row'], b['line'])} duplicates {where(a['row'], a['line'])} (after normalising case, "
                "Unicode and whitespace); clean_dataset removes duplicates",
                row=b["row"],
                line=b["line"],
                split=b.get("split"),
                split_row=b.get("split_row"),
                pair=[a, b],
            )
    if split_of is not None:
        for a_i, b_i, similarity in near_duplicate_pairs(c, split_of):
            a, b = _ref(c, a_i, split_of, pos), _ref(c, b_i, split_of, pos)
            issues.add(
                "leakage_near_duplicate",
                WARNING,
                f"{where(b['row'], b['line'])} ({b['split']}) nearly duplicates {where(a['row'], a['line'])} "
                f"({a['split']}), estimated Jaccard similarity {similarity:.2f}",
                row=b["row"],
                line=b["line"],
                split=b["split"],
                split_row=b["split_row"],
                pair=[a, b],
                similarity=round(similarity, 3),
            )

    total = c.in_tokens.astype(np.int64) + c.out_tokens
    over = np.nonzero(total > max_length)[0]
    if over.size:
        listed = [int(c.rows[i]) for i in over[:50]]
        issues.add(
            "over_max_length",
            WARNING,
            f"{over.size} rows are longer than the model's {max_length} tokens and will be truncated: rows "
            f"{', '.join(map(str, listed))}{' …' if over.size > 50 else ''}",
            field=None,
            count=int(over.size),
            rows=listed,
        )

    if c.task_type == "classification" and c.labels:
        counts = Counter(c.labels)
        if len(counts) < 2:
            issues.add(
                "single_class",
                WARNING,
                f"every row has the label {next(iter(counts))!r}: a classifier needs at least two classes",
                field="label",
            )
        else:
            ratio = max(counts.values()) / min(counts.values())
            if ratio > 10:
                issues.add(
                    "class_imbalance",
                    WARNING,
                    f"classes are imbalanced: the largest has {ratio:.1f}× the samples of the smallest ({dict(counts.most_common())})",
                    field="label",
                    imbalance_ratio=round(ratio, 2),
                )
        needed = 1 + sum(
            1 for name in ("validation", "test") if (fractions or DEFAULT_FRACTIONS).get(name, 0) > 0
        )
        for label, count in counts.items():
            if count < needed:
                issues.add(
                    "class_too_small",
                    WARNING,
                    f"class {label!r} has {count} samples: too few to appear in every split ({needed} needed)",
                    field="label",
                    label=label,
                    count=count,
                )


def _duplicates_of_first(hashes: np.ndarray) -> list[tuple[int, int]]:
    """(row, first row with the same hash) for every repeated row, in row order; numpy, no per-row dict."""
    if hashes.size == 0:
        return []
    order = np.argsort(hashes, kind="stable")
    sorted_hashes = hashes[order]
    starts = np.concatenate([[True], sorted_hashes[1:] != sorted_hashes[:-1]])
    group_first = order[np.maximum.accumulate(np.where(starts, np.arange(order.size), 0))]
    repeated = ~starts
    return sorted(zip(order[repeated].tolist(), group_first[repeated].tolist(), strict=True))


SHINGLE_MAX_WORDS = 20_000  # near-duplicate checks look at a row's first 20,000 words


def _shingles(text: str) -> set[bytes]:
    words = normalise_text(text[: SHINGLE_MAX_WORDS * 16]).split()[:SHINGLE_MAX_WORDS]
    if len(words) < 3:
        return {" ".join(words).encode()} if words else set()
    return {" ".join(words[i : i + 3]).encode() for i in range(len(words) - 2)}


def near_duplicate_pairs(c: Collected, split_of: np.ndarray) -> list[tuple[int, int, float]]:
    """Near-duplicate pairs across splits with MinHash LSH (datasketch), skipping exact duplicates."""
    from datasketch import LeanMinHash, MinHash, MinHashLSH

    evaluation = np.nonzero(split_of != 0)[0]
    train = np.nonzero(split_of == 0)[0]
    if evaluation.size == 0 or train.size == 0:
        return []
    rng = np.random.default_rng(0)
    budget = NEAR_DUPLICATE_MAX_ROWS
    if evaluation.size > budget // 2:
        evaluation = np.sort(rng.choice(evaluation, budget // 2, replace=False))
    if train.size > budget - evaluation.size:
        train = np.sort(rng.choice(train, budget - evaluation.size, replace=False))
    chosen = np.concatenate([train, evaluation])
    keep: list[int] = []

    def shingle_sets():
        """One row's shingles at a time (a set of 3-word shingles is ~10x its text: never all at once)."""
        k = 0
        for batch in c.table.take(pa.array(chosen)).to_batches(max_chunksize=1000):
            for r in batch.to_pylist():
                shingles = _shingles(" ".join(io_text(r, c.task_type)))
                if shingles:
                    keep.append(k)
                    yield shingles
                k += 1

    # LeanMinHash drops each signature's copy of the permutations (1 KB each): only the 64 hash values stay.
    signatures_list = [LeanMinHash(m) for m in MinHash.generator(shingle_sets(), num_perm=64)]
    signatures = dict(zip(keep, signatures_list, strict=True))
    lsh = MinHashLSH(threshold=NEAR_DUPLICATE_THRESHOLD, num_perm=64)
    for k, signature in signatures.items():
        lsh.insert(k, signature)
    pairs, seen = [], set()
    for k, signature in signatures.items():
        i = int(chosen[k])
        for other in lsh.query(signature):
            j = int(chosen[other])
            if j == i or split_of[i] == split_of[j] or c.hashes[i] == c.hashes[j]:
                continue
            a, b = sorted((i, j), key=lambda x: (split_of[x], x))
            if (a, b) in seen:
                continue
            similarity = signature.jaccard(signatures[other])
            if similarity >= NEAR_DUPLICATE_THRESHOLD:
                seen.add((a, b))
                pairs.append((a, b, similarity))
    return sorted(pairs)


# --- statistics -----------------------------------------------------------------------------------------


def statistics(c: Collected, split_of: np.ndarray | None, *, max_length: int, tokenizer_name: str) -> dict:
    counts = np.bincount(split_of, minlength=3) if split_of is not None else np.array([c.n, 0, 0])
    stats = {
        "total_samples": c.n,
        "train_samples": int(counts[0]),
        "val_samples": int(counts[1]),
        "test_samples": int(counts[2]),
        "avg_tokens_input": int(round(float(c.in_tokens.mean()))) if c.n else 0,
        "avg_tokens_output": int(round(float(c.out_tokens.mean()))) if c.n else 0,
        "tokens_input": describe(c.in_tokens),
        "tokens_output": describe(c.out_tokens),
        "token_histogram": {"input": histogram(c.in_tokens), "output": histogram(c.out_tokens)},
        "max_length": max_length,
        "rows_over_max_length": int(((c.in_tokens.astype(np.int64) + c.out_tokens) > max_length).sum()),
        "tokenizer": tokenizer_name,
    }
    if c.task_type == "classification":
        stats["label_counts"] = {str(k): v for k, v in Counter(c.labels).most_common()}
        if split_of is not None:
            stats["label_counts_by_split"] = {
                SPLITS[s]: {
                    str(k): v
                    for k, v in Counter(c.labels[i] for i in np.nonzero(split_of == s)[0]).most_common()
                }
                for s in range(3)
            }
    return stats
