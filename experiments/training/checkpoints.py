"""Atomic checkpoints: a checkpoint folder appears complete or not at all.

The Trainer writes `checkpoint-N` in place, so a full disk, a read-only mount or a killed worker can
leave a half-written folder that a resume would then load. `AtomicCheckpointTrainer` lets the Trainer
write into `<output_dir>/.staging/checkpoint-N`, then renames it to `<output_dir>/checkpoint-N` (one
rename on the same filesystem) and only then rotates old checkpoints. A failed write removes the
staging folder, leaves every earlier checkpoint untouched and raises CheckpointWriteError with the
folder and the reason ("no space left on device", "permission denied", ...). No Django here.
"""

from __future__ import annotations

import errno
import os
import shutil
from pathlib import Path
from typing import Any

from transformers import Trainer
from transformers.trainer_utils import PREFIX_CHECKPOINT_DIR, rotate_checkpoints

STAGING = ".staging"
TRAINER_STATE_NAME = "trainer_state.json"


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
        staging_root = run_dir / STAGING
        staged = staging_root / name
        output_dir, limit = self.args.output_dir, self.args.save_total_limit
        main = self.args.should_save  # the main process of a multi-process (torchrun) run
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
            if main:
                _replace_dir(staged, final)
        except Exception as exc:
            if main:
                shutil.rmtree(staged, ignore_errors=True)
            raise CheckpointWriteError(final, _reason(exc, run_dir)) from exc
        finally:
            self.args.output_dir, self.args.save_total_limit = output_dir, limit
        if self.args.should_save:
            rotate_checkpoints(
                output_dir=str(run_dir),
                save_total_limit=limit,
                best_model_checkpoint=self.state.best_model_checkpoint,
                use_mtime=True,
            )
