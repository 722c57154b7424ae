"""Atomic checkpoints: a checkpoint folder appears complete or not at all.

The Trainer writes `checkpoint-N` in place, so a full disk, a read-only mount or a killed worker can
leave a half-written folder that a resume would then load. `AtomicCheckpointTrainer` lets the Trainer
write into `<output_dir>/.staging/checkpoint-N`, then renames it to `<output_dir>/checkpoint-N` (one
rename on the same filesystem) and only then rotates old checkpoints. A failed write removes the
staging folder, leaves every earlier checkpoint untouched and raises CheckpointWriteError with the
folder and the reason ("no space left on device", "permission denied", ...). No Django here.

Fencing: a job runs as numbered attempts (a requeue after its worker was declared lost starts the next
one, under a new token). An `AttemptFence` registered for the output folder stops a superseded attempt
from writing there: before each checkpoint, before moving it into place, before rotating and before the
final save it checks the folder's fence file (`.t4dm-attempt`, raised by each attempt when it starts)
and, before each save, asks the platform whether its attempt still runs (the worker's `confirm`). A
superseded attempt raises FencedError and writes nothing more; its rotation never deletes a checkpoint
that a later attempt saved (each checkpoint folder carries its attempt's number), and it stages into a
folder of its own (`.staging/attempt-N`).
"""

from __future__ import annotations

import errno
import os
import shutil
from pathlib import Path
from typing import Any

from transformers import Trainer
from transformers.trainer_utils import PREFIX_CHECKPOINT_DIR, sort_checkpoints

from experiments.training.fencing import ATTEMPT_MARKER, STAGING, AttemptFence, FencedError, fence_for

TRAINER_STATE_NAME = "trainer_state.json"


def rotate_own_checkpoints(
    run_dir: Path, limit: int | None, best_model_checkpoint: str | None, fence: AttemptFence | None
) -> None:
    """transformers' rotate_checkpoints (oldest first, keeping the newest and the best), except that a
    checkpoint saved by a later attempt is never deleted."""
    if not limit or limit <= 0:
        return
    checkpoints = sort_checkpoints(str(run_dir), PREFIX_CHECKPOINT_DIR, use_mtime=True)
    if len(checkpoints) <= limit:
        return
    protected = {checkpoints[-1]}
    if best_model_checkpoint is not None:
        protected.add(str(Path(best_model_checkpoint)))
    remaining = len(checkpoints)
    for checkpoint in checkpoints:
        if remaining <= max(limit, len(protected)):
            break
        if checkpoint in protected or (fence is not None and not fence.owns(Path(checkpoint))):
            continue
        shutil.rmtree(checkpoint, ignore_errors=True)
        remaining -= 1


class CheckpointWriteError(OSError):
    """A checkpoint could not be written; the message names the folder and the reason."""

    def __init__(self, path: Path, reason: str):
        super().__init__(f"checkpoint could not be written to {path}: {reason}")
        self.path = path
        self.reason = reason


def _reason(exc: BaseException, folder: Path) -> str:
    """The OS reason behind a failed write (torch and safetensors wrap it in their own errors)."""
    link: BaseException | None = exc
    while link is not None:
        if isinstance(link, OSError) and link.errno:
            return (link.strerror or os.strerror(link.errno)).lower()
        link = link.__cause__ or link.__context__
    try:
        if shutil.disk_usage(folder).free < 1 << 20:
            return os.strerror(errno.ENOSPC).lower()
    except OSError:
        pass
    if os.statvfs(folder).f_flag & os.ST_RDONLY:
        return os.strerror(errno.EROFS).lower()
    if not os.access(folder, os.W_OK):
        return os.strerror(errno.EACCES).lower()
    return f"{type(exc).__name__}: {exc}"


def _replace_dir(source: Path, target: Path) -> None:
    """Move `source` to `target`; an existing `target` (the same step saved again after a resume) is
    swapped out first, so there is never a moment with a half-written `target`."""
    if target.exists():
        old = source.parent / f"{target.name}.old"
        shutil.rmtree(old, ignore_errors=True)
        os.replace(target, old)
        os.replace(source, target)
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.replace(source, target)


class AtomicCheckpointTrainer(Trainer):
    """A Trainer whose checkpoints are written to a staging folder and renamed into place."""

    def _save_checkpoint(self, model: Any, trial: Any) -> None:
        run_dir = Path(self._get_output_dir(trial=trial))
        name = f"{PREFIX_CHECKPOINT_DIR}-{self.state.global_step}"
        final = run_dir / name
        fence = fence_for(run_dir)
        staging_root = run_dir / STAGING / f"attempt-{fence.attempt}" if fence else run_dir / STAGING
        staged = staging_root / name
        output_dir, limit = self.args.output_dir, self.args.save_total_limit
        main = self.args.should_save  # the main process of a multi-process (torchrun) run
        if main and fence is not None:
            fence.check(ask=True)  # a superseded attempt writes nothing, not even a staged folder
        try:
            if main:
                shutil.rmtree(staged, ignore_errors=True)
                staging_root.mkdir(parents=True, exist_ok=True)
            # Every process writes its own RNG state into the staged folder: it must exist first.
            self.accelerator.wait_for_everyone()
            # The Trainer writes under args.output_dir; rotation waits until the new one is in place.
            self.args.output_dir, self.args.save_total_limit = str(staging_root), None
            super()._save_checkpoint(model, trial)
            self.args.output_dir = output_dir
            # ... and all of them have written before the main process moves the folder into place.
            self.accelerator.wait_for_everyone()
            # The Trainer looked for the best checkpoint in the staging folder: point it at run_dir.
            best_step = self.state.best_global_step
            if best_step:
                best = run_dir / f"{PREFIX_CHECKPOINT_DIR}-{best_step}"
                if best_step == self.state.global_step or best.exists():
                    self.state.best_model_checkpoint = str(best)
                    if self.args.should_save:
                        self.state.save_to_json(str(staged / TRAINER_STATE_NAME))
            if main and fence is not None:
                (staged / ATTEMPT_MARKER).write_text(str(fence.attempt), encoding="utf-8")
                fence.check()
                if final.exists() and not fence.owns(final):
                    raise FencedError(f"{final} was saved by a later attempt of this job; it is left alone")
            if main:
                _replace_dir(staged, final)
        except FencedError:
            shutil.rmtree(staged, ignore_errors=True)
            raise
        except Exception as exc:
            if main:
                shutil.rmtree(staged, ignore_errors=True)
            raise CheckpointWriteError(final, _reason(exc, run_dir)) from exc
        finally:
            self.args.output_dir, self.args.save_total_limit = output_dir, limit
        if self.args.should_save:
            if fence is not None:
                fence.check()
            rotate_own_checkpoints(run_dir, limit, self.state.best_model_checkpoint, fence)

    def save_model(self, output_dir: str | None = None, _internal_call: bool = False) -> None:
        """The final save (checkpoints save through _save_checkpoint): not from a superseded attempt."""
        if not _internal_call and self.args.should_save:
            fence = fence_for(self.args.output_dir)
            if fence is not None:
                fence.check(ask=True)
        super().save_model(output_dir, _internal_call)
