"""Attempt fencing for a job's folder, without heavy imports (the worker module imports it;
experiments/training/checkpoints.py uses it when it saves).

A job runs as numbered attempts: a requeue (its worker was declared lost, or refused the job) starts the
next one under a new token. Each attempt raises the job folder's fence file to its number when it
starts (`AttemptFence.claim`); before every write an attempt checks that no later one has raised it
and, before each save, asks the platform whether it still runs (`confirm`). Each checkpoint folder
carries its attempt's number, so an attempt never replaces or rotates away a later attempt's work.
"""

from __future__ import annotations

import os
import shutil
import threading
from collections.abc import Callable
from pathlib import Path

STAGING = ".staging"
# The job folder's fence file (the newest attempt that started) and each checkpoint's attempt marker.
FENCE_FILE = ".t4dm-attempt"
ATTEMPT_MARKER = ".t4dm-attempt"
# A worker process that runs the engine under torchrun passes its attempt to the processes this way.
ATTEMPT_ENV = "T4DM_JOB_ATTEMPT"


class FencedError(RuntimeError):
    """This attempt of the job was superseded (or the job ended): it must not write to the job folder."""


def _read_attempt(path: Path) -> int:
    try:
        return int(path.read_text(encoding="utf-8").strip() or 0)
    except (OSError, ValueError):
        return 0


class AttemptFence:
    """Attempt ``attempt`` of the job whose folder is ``output_dir``.

    ``confirm``: asks the platform whether this attempt still runs (False: superseded or ended); it
    is called before each save, not per step. An unreachable platform is the caller's call to make
    (the worker keeps writing then: the fence file still guards the folder).
    """

    def __init__(self, output_dir: str | Path, attempt: int, confirm: Callable[[], bool] | None = None):
        self.output_dir = Path(output_dir)
        self.attempt = int(attempt)
        self.confirm = confirm

    @property
    def fence_file(self) -> Path:
        return self.output_dir / FENCE_FILE

    def claim(self) -> None:
        """Raise the folder's fence to this attempt (when it starts); FencedError if a later one has.
        Staging folders of earlier attempts are removed (a superseded run may have left one)."""
        self.output_dir.mkdir(parents=True, exist_ok=True)
        self.check()
        temporary = self.output_dir / f"{FENCE_FILE}.{self.attempt}.{os.getpid()}"
        temporary.write_text(str(self.attempt), encoding="utf-8")
        os.replace(temporary, self.fence_file)
        for folder in (self.output_dir / STAGING).glob("attempt-*"):
            number = folder.name.removeprefix("attempt-")
            if number.isdigit() and int(number) < self.attempt:
                shutil.rmtree(folder, ignore_errors=True)

    def check(self, *, ask: bool = False) -> None:
        """FencedError unless this attempt may still write (``ask``: also ask the platform)."""
        newest = _read_attempt(self.fence_file)
        if newest > self.attempt:
            raise FencedError(
                f"attempt {self.attempt} of this job was superseded by attempt {newest}: "
                f"nothing more is written to {self.output_dir}"
            )
        if ask and self.confirm is not None and not self.confirm():
            raise FencedError(
                f"the platform no longer runs attempt {self.attempt} of this job: "
                f"nothing more is written to {self.output_dir}"
            )

    def owns(self, checkpoint: Path) -> bool:
        """Whether this attempt may replace or delete ``checkpoint`` (saved by it or an earlier one)."""
        return _read_attempt(checkpoint / ATTEMPT_MARKER) <= self.attempt


_fences: dict[str, AttemptFence] = {}
_fences_lock = threading.Lock()


def fence_register(fence: AttemptFence) -> None:
    with _fences_lock:
        _fences[os.path.realpath(fence.output_dir)] = fence


def fence_unregister(fence: AttemptFence) -> None:
    with _fences_lock:
        key = os.path.realpath(fence.output_dir)
        if _fences.get(key) is fence:
            del _fences[key]


def fence_for(output_dir: str | Path) -> AttemptFence | None:
    """The fence registered for this folder; else one from T4DM_JOB_ATTEMPT (a torchrun process of
    a worker's job: the fence file only); else None (a run outside the platform: no fencing)."""
    with _fences_lock:
        fence = _fences.get(os.path.realpath(output_dir))
    if fence is None and os.environ.get(ATTEMPT_ENV, "").isdigit():
        fence = AttemptFence(output_dir, int(os.environ[ATTEMPT_ENV]))
    return fence
