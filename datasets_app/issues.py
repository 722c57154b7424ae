"""Validation issues: code, severity, row, line, field and a message a person can act on."""

from __future__ import annotations

from collections import Counter
from typing import Any

ERROR, WARNING, INFO = "error", "warning", "info"
MAX_ISSUES_PER_CODE = 50


class IssueLog:
    """Collects issues, keeping at most MAX_ISSUES_PER_CODE examples per code and counting the rest."""

    def __init__(self, max_per_code: int = MAX_ISSUES_PER_CODE):
        self.max_per_code = max_per_code
        self.counts: Counter[str] = Counter()
        self.severity_of: dict[str, str] = {}
        self.kept: list[dict[str, Any]] = []

    def add(
        self,
        code: str,
        severity: str,
        message: str,
        *,
        row: int | None = None,
        line: int | None = None,
        field: str | None = None,
        **extra: Any,
    ) -> None:
        self.counts[code] += 1
        self.severity_of[code] = severity
        if self.counts[code] <= self.max_per_code:
            issue = {"code": code, "severity": severity, "row": row, "line": line, "field": field}
            issue["message"] = message
            issue.update(extra)
            self.kept.append(issue)

    def extend(self, issues: list[dict[str, Any]]) -> None:
        for issue in issues:
            fields = {k: v for k, v in issue.items() if k not in ("code", "severity", "message")}
            self.add(issue["code"], issue["severity"], issue["message"], **fields)

    @property
    def error_count(self) -> int:
        return sum(n for code, n in self.counts.items() if self.severity_of[code] == ERROR)

    def first_error(self) -> dict[str, Any] | None:
        return next((i for i in self.kept if i["severity"] == ERROR), None)

    def status(self) -> str:
        severities = set(self.severity_of.values())
        if ERROR in severities:
            return "failed"
        return "warning" if WARNING in severities else "passed"

    def to_list(self) -> list[dict[str, Any]]:
        issues = list(self.kept)
        for code, count in self.counts.items():
            if count > self.max_per_code:
                issues.append(
                    {
                        "code": code,
                        "severity": self.severity_of[code],
                        "row": None,
                        "line": None,
                        "field": None,
                        "message": f"{count - self.max_per_code} more rows have the problem '{code}' "
                        f"({count} in all; the first {self.max_per_code} are listed)",
                        "count": count,
                    }
                )
        return issues

    def summary(self) -> dict[str, int]:
        return dict(self.counts)


def where(row: int | None, line: int | None) -> str:
    """'line 7' for line-based sources, else 'row 7'."""
    if line:
        return f"line {line}"
    return f"row {row}" if row else "the file"
