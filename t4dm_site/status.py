"""The running → succeeded | failed transitions shared by the records a worker runs: training jobs,
evaluations, workflows and their steps, dataset tasks, human evaluation set-ups.

A plain mixin (no fields, so no migration): the model keeps its own `status` field and choices and
names its three statuses. Each transition sets every field that changes with it and saves only
those (`update_fields`):

- running: `started_at` (the latest start, or the first one with KEEPS_FIRST_START);
- succeeded: `finished_at`, and `progress` = 1.0 where the model has one;
- failed: `error` and `finished_at`.

Fields a model lacks are skipped; `updated_at` (auto_now) is always saved with the change. A model
adds its own fields through keyword arguments (`worker=`, `output=`) and wraps these methods where it
does more (a job retires its worker token).
"""

from __future__ import annotations

from typing import Any, ClassVar

from django.utils import timezone


class StatusTransitionsMixin:
    STATUS_RUNNING: ClassVar[str] = "running"
    STATUS_SUCCEEDED: ClassVar[str] = "succeeded"
    STATUS_FAILED: ClassVar[str] = "failed"
    # A retried workflow or requeued job keeps the time it first started; evaluations and steps
    # record their latest start.
    KEEPS_FIRST_START: ClassVar[bool] = False

    def _has_field(self, name: str) -> bool:
        return any(field.name == name for field in self._meta.concrete_fields)

    def _transition(self, status: str, *, save_all: bool = False, **changes: Any) -> None:
        """Set `status` and `changes` together and save them (every field with save_all, for results
        set on the instance just before)."""
        self.status = status
        for name, value in changes.items():
            setattr(self, name, value)
        if save_all:
            self.save()
            return
        update = ["status", *changes]
        if self._has_field("updated_at"):
            update.append("updated_at")
        self.save(update_fields=update)

    def mark_running(self, **changes: Any) -> None:
        if self._has_field("started_at") and "started_at" not in changes:
            kept = self.started_at if self.KEEPS_FIRST_START else None
            changes["started_at"] = kept or timezone.now()
        self._transition(self.STATUS_RUNNING, **changes)

    def mark_succeeded(self, *, save_all: bool = False, **changes: Any) -> None:
        self._finish(changes)
        if self._has_field("progress"):
            changes.setdefault("progress", 1.0)
        self._transition(self.STATUS_SUCCEEDED, save_all=save_all, **changes)

    def mark_failed(self, *, error: str, **changes: Any) -> None:
        self._finish(changes)
        self._transition(self.STATUS_FAILED, error=error, **changes)

    def _finish(self, changes: dict[str, Any]) -> None:
        if self._has_field("finished_at"):
            changes.setdefault("finished_at", timezone.now())
