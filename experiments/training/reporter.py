"""How the engine talks to the platform: a small Protocol plus two simple implementations."""

from __future__ import annotations

import json
import sys
import time
from dataclasses import dataclass, field
from typing import Any, Protocol, TextIO


class Reporter(Protocol):
    def metrics(self, step: int, values: dict[str, float], *, epoch: float | None = None) -> None: ...
    def progress(self, *, step: int, total_steps: int, epoch: float) -> None: ...
    def checkpoint(self, *, step: int, path: str, metrics: dict[str, float]) -> None: ...
    def log(self, message: str) -> None: ...
    def should_stop(self) -> bool: ...


@dataclass
class MemoryReporter:
    """Records every event in lists; for tests.

    ``stop_after_step``: should_stop() turns true once progress for that step has been reported.
    """

    stop_after_step: int | None = None
    metric_events: list[dict[str, Any]] = field(default_factory=list)
    progress_events: list[dict[str, Any]] = field(default_factory=list)
    checkpoint_events: list[dict[str, Any]] = field(default_factory=list)
    messages: list[str] = field(default_factory=list)

    def metrics(self, step: int, values: dict[str, float], *, epoch: float | None = None) -> None:
        self.metric_events.append({"step": step, "values": dict(values), "epoch": epoch})

    def progress(self, *, step: int, total_steps: int, epoch: float) -> None:
        self.progress_events.append({"step": step, "total_steps": total_steps, "epoch": epoch})

    def checkpoint(self, *, step: int, path: str, metrics: dict[str, float]) -> None:
        self.checkpoint_events.append({"step": step, "path": path, "metrics": dict(metrics)})

    def log(self, message: str) -> None:
        self.messages.append(message)

    def should_stop(self) -> bool:
        if self.stop_after_step is None or not self.progress_events:
            return False
        return self.progress_events[-1]["step"] >= self.stop_after_step

    def values(self, key: str) -> list[float]:
        """All reported values of one metric key, in order."""
        return [e["values"][key] for e in self.metric_events if key in e["values"]]


class StdoutReporter:
    """Prints one JSON object per event line (``{"event": ..., "time": ..., ...}``); never stops."""

    def __init__(self, stream: TextIO | None = None) -> None:
        self._stream = stream

    def _emit(self, event: str, **data: Any) -> None:
        stream = self._stream or sys.stdout
        stream.write(json.dumps({"event": event, "time": time.time(), **data}) + "\n")
        stream.flush()

    def metrics(self, step: int, values: dict[str, float], *, epoch: float | None = None) -> None:
        self._emit("metrics", step=step, values=values, epoch=epoch)

    def progress(self, *, step: int, total_steps: int, epoch: float) -> None:
        self._emit("progress", step=step, total_steps=total_steps, epoch=epoch)

    def checkpoint(self, *, step: int, path: str, metrics: dict[str, float]) -> None:
        self._emit("checkpoint", step=step, path=path, metrics=metrics)

    def log(self, message: str) -> None:
        self._emit("log", message=message)

    def should_stop(self) -> bool:
        return False


class NullReporter:
    """Reports nothing: the non-zero ranks of a multi-process run (rank 0 reports for all)."""

    def metrics(self, step: int, values: dict[str, float], *, epoch: float | None = None) -> None:
        pass

    def progress(self, *, step: int, total_steps: int, epoch: float) -> None:
        pass

    def checkpoint(self, *, step: int, path: str, metrics: dict[str, float]) -> None:
        pass

    def log(self, message: str) -> None:
        pass

    def should_stop(self) -> bool:
        return False
