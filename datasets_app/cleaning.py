"""clean_dataset's fixes, on canonical rows split by split. Returns the cleaned rows and a report of
exactly what changed: a count per fix and a few before/after examples."""

from __future__ import annotations

import re
import unicodedata
from collections import Counter

import ftfy

from datasets_app.pipeline import NEAR_DUPLICATE_THRESHOLD, _hash, _shingles, normalise_text
from datasets_app.rows import ROLES, io_text

SPLITS = ("train", "validation", "test")
MAX_EXAMPLES = 5
NEAR_DUPLICATE_MAX_ROWS = 50_000
_SPACES = re.compile(r"[ \t\u00a0]{2,}")
_TRAILING = re.compile(r"[ \t]+\n")


class Report:
    def __init__(self) -> None:
        self.counts: Counter[str] = Counter()
        self.examples: dict[str, list[dict]] = {}

    def record(self, fix: str, split: str, row: int, before, after=None, **extra) -> None:
        self.counts[fix] += 1
        examples = self.examples.setdefault(fix, [])
        if len(examples) < MAX_EXAMPLES:
            example = {"split": split, "row": row, "before": before}
            if after is not None:
                example["after"] = after
            examples.append({**example, **extra})


def tidy_text(text: str) -> tuple[str, list[str]]:
    """(fixed text, names of the fixes applied)."""
    fixes = []
    if not text.isascii():
        repaired = ftfy.fix_encoding(text)
        if repaired != text:
            fixes.append("mojibake_repaired")
            text = repaired
        normalised = unicodedata.normalize("NFC", text)
        if normalised != text:
            fixes.append("unicode_normalised")
            text = normalised
    tidy = _TRAILING.sub("\n", _SPACES.sub(" ", text.replace("\r\n", "\n").replace("\r", "\n"))).strip()
    if tidy != text:
        fixes.append("whitespace_tidied")
    return tidy, fixes


def _fix_row(row: dict, task_type: str, split: str, number: int, report: Report) -> dict:
    if task_type == "chat":
        messages = []
        for message in row["messages"]:
            role = message["role"]
            if role not in ROLES and role.strip().lower() in ROLES:
                report.record("role_case_fixed", split, number, role, role.strip().lower())
                role = role.strip().lower()
            content, fixes = tidy_text(message["content"])
            for fix in fixes:
                report.record(fix, split, number, message["content"], content)
            messages.append({"role": role, "content": content})
        return {"messages": messages}
    fixed = dict(row)
    for name, value in row.items():
        if isinstance(value, str) and name != "label":
            fixed[name], fixes = tidy_text(value)
            for fix in fixes:
                report.record(fix, split, number, value, fixed[name])
    return fixed


def _is_empty(row: dict, task_type: str) -> bool:
    if task_type == "chat":
        return any(not m["content"].strip() for m in row["messages"] if m["role"].lower() != "system")
    prompt, output = io_text(row, task_type)
    return not output.strip() or (task_type in ("instruction", "classification") and not prompt.strip())


def _drop_empty_system(row: dict, task_type: str) -> dict:
    if (
        task_type == "chat"
        and row["messages"]
        and row["messages"][0]["role"] == "system"
        and not row["messages"][0]["content"].strip()
    ):
        return {"messages": row["messages"][1:]}
    return row


def clean_rows(
    split_rows: dict[str, list[dict]],
    *,
    task_type: str,
    remove_duplicates: bool = True,
    fix_formatting: bool = True,
    near_duplicates: bool = True,
) -> tuple[dict[str, list[dict]], dict]:
    report = Report()
    cleaned: dict[str, list[tuple[int, dict]]] = {}
    for split in SPLITS:
        kept = []
        for number, row in enumerate(split_rows.get(split, []), start=1):
            if _is_empty(row, task_type):  # checked first, so a dropped row's other fixes are not counted
                report.record("empty_samples_dropped", split, number, row)
                continue
            if fix_formatting:
                row = _drop_empty_system(_fix_row(row, task_type, split, number, report), task_type)
            kept.append((number, row))
        cleaned[split] = kept

    if remove_duplicates:
        # Evaluation rows win: a train row that repeats a test/validation row is the one removed, so the
        # evaluation sets stay as they were and stop overlapping training.
        order = ("test", "validation", "train")
        seen: dict[int, tuple[str, int]] = {}
        for split in order:
            kept = []
            for number, row in cleaned[split]:
                prompt, output = io_text(row, task_type)
                h = _hash(normalise_text(prompt) + "\x1f" + normalise_text(output))
                if h in seen:
                    first_split, first_row = seen[h]
                    report.record(
                        "exact_duplicates_removed",
                        split,
                        number,
                        row,
                        duplicate_of={"split": first_split, "row": first_row},
                    )
                    continue
                seen[h] = (split, number)
                kept.append((number, row))
            cleaned[split] = kept
        if near_duplicates:
            _remove_near_duplicates(cleaned, task_type, order, report)

    result = {split: [row for _, row in cleaned[split]] for split in SPLITS}
    return result, {
        "changes": dict(report.counts),
        "examples": report.examples,
        "options": {
            "remove_duplicates": remove_duplicates,
            "fix_formatting": fix_formatting,
            "near_duplicates": near_duplicates,
        },
        "rows_before": {s: len(split_rows.get(s, [])) for s in SPLITS},
        "rows_after": {s: len(result[s]) for s in SPLITS},
    }


def _remove_near_duplicates(cleaned, task_type: str, order, report: Report) -> None:
    from datasketch import MinHash, MinHashLSH

    entries = [(split, number, row) for split in order for number, row in cleaned[split]]
    if len(entries) > NEAR_DUPLICATE_MAX_ROWS:
        report.counts["near_duplicates_skipped_too_many_rows"] = len(entries)
        return
    shingles = [_shingles(" ".join(io_text(row, task_type))) for _, _, row in entries]
    keep = [k for k, s in enumerate(shingles) if s]
    signatures = dict(zip(keep, MinHash.bulk([shingles[k] for k in keep], num_perm=64), strict=True))
    lsh = MinHashLSH(threshold=NEAR_DUPLICATE_THRESHOLD, num_perm=64)
    removed: set[int] = set()
    for k in keep:  # in priority order: a row near one already kept is removed
        signature = signatures[k]
        matches = [
            m for m in lsh.query(signature) if signature.jaccard(signatures[m]) >= NEAR_DUPLICATE_THRESHOLD
        ]
        if matches:
            removed.add(k)
            split, number, row = entries[k]
            other = entries[matches[0]]
            report.record(
                "near_duplicates_removed",
                split,
                number,
                row,
                duplicate_of={"split": other[0], "row": other[1]},
            )
            continue
        lsh.insert(k, signature)
    for split in order:
        cleaned[split] = [
            (number, row)
            for (number, row), k in zip(cleaned[split], _indices_of(entries, split), strict=True)
            if k not in removed
        ]


def _indices_of(entries, split: str) -> list[int]:
    return [k for k, entry in enumerate(entries) if entry[0] == split]
