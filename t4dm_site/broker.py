"""The embedded default's message broker: kombu's filesystem transport, made safe to read and to crash.

kombu's own filesystem transport writes a message straight into the queue folder, so a worker polling
the folder can take a file that is still being written (`JSONDecodeError`, and the worker exits with
"Unrecoverable error"); and it deletes a message as soon as a worker takes it, so a worker killed
mid-task loses it, `acks_late` notwithstanding. This transport (used for `CELERY_BROKER_URL=filesystem://`,
see settings.py; the URL and the folder layout are unchanged) fixes both:

- **Publish = write, then rename.** A message is written (and fsynced) under `tmp/`, outside the queue
  folder, and renamed into `queue/` in one step: a file in the queue is always complete.
- **Take = rename into the taker's claim folder** (`claims/<owner>/`, atomic: of two workers exactly one
  gets it). The file stays there until the task is acknowledged (Celery's `acks_late`: after the task
  ran); a rejected-with-requeue or a shut-down worker's unstarted message is renamed back into the queue.
- **A dead taker's messages come back.** Each taking process holds an `flock` on `claims/<owner>.lock`
  for its lifetime; the kernel drops it when the process dies, however it dies. Another worker that
  finds a claim folder whose lock it can take notes the time, and once `redeliver_after` seconds have
  passed (default: the heartbeat timeout, so that the platform's own lost-job requeue of a training job
  — with a fresh job token — comes first; the old message is then refused and skipped) renames the
  messages back into the queue, ahead of newer ones. Delivery is at least once; the tasks are
  idempotent for a redelivered message (a delivered webhook, a finished evaluation are not redone).
- **A file that does not parse never crashes the worker**: one written by an older, non-atomic
  publisher may still be growing, so a young one is left for a later poll; one older than
  `corrupt_after` seconds is moved to `bad/` and logged.

Files and folders are private to the service user (0600 / 0700): messages carry job tokens.
"""

from __future__ import annotations

import fcntl
import logging
import os
import time
import uuid
from pathlib import Path
from queue import Empty
from time import monotonic

from kombu.transport import filesystem
from kombu.utils.encoding import bytes_to_str, str_to_bytes
from kombu.utils.json import dumps, loads

log = logging.getLogger(__name__)

_DEAD_MARK = ".dead"  # claims/<owner>.dead: when another process found the owner gone


class _Owner:
    """This process's claim folder and the lock that says it is alive (one per process id)."""

    def __init__(self, claims: Path):
        self.id = f"{os.getpid()}-{uuid.uuid4().hex}"
        self.folder = claims / self.id
        self.folder.mkdir(mode=0o700, parents=True, exist_ok=True)
        # Locked under another name, then renamed into place: a `.lock` file is never seen unlocked
        # while its process lives. Held (never closed) until the process ends, however it ends.
        pending = claims / f"{self.id}.locking"
        fd = os.open(pending, os.O_RDWR | os.O_CREAT, 0o600)
        fcntl.flock(fd, fcntl.LOCK_EX)
        os.rename(pending, claims / f"{self.id}.lock")
        self.lock_fd = fd
        self.pid = os.getpid()


_owners: dict[tuple[int, str], _Owner] = {}


class Channel(filesystem.Channel):
    """Atomic publish, claim-until-ack, redelivery of a dead worker's messages (module docstring)."""

    _last_recovery = 0.0

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._claimed: dict[str, str] = {}  # delivery tag -> claim file
        for folder in (self.data_folder_in, self.data_folder_out, self.tmp_folder, self.claims_folder):
            Path(folder).mkdir(mode=0o700, parents=True, exist_ok=True)

    # --- folders and options --------------------------------------------------------------------
    @property
    def _root(self) -> Path:
        return Path(self.data_folder_in).parent

    @property
    def tmp_folder(self) -> Path:
        return Path(self.transport_options.get("tmp_folder") or self._root / "tmp")

    @property
    def claims_folder(self) -> Path:
        return Path(self.transport_options.get("claims_folder") or self._root / "claims")

    @property
    def bad_folder(self) -> Path:
        return Path(self.transport_options.get("bad_folder") or self._root / "bad")

    @property
    def redeliver_after(self) -> float:
        return float(self.transport_options.get("redeliver_after", 120.0))

    @property
    def corrupt_after(self) -> float:
        return float(self.transport_options.get("corrupt_after", 30.0))

    def _owner(self) -> _Owner:
        key = (os.getpid(), str(self.claims_folder))
        owner = _owners.get(key)
        if owner is None:
            owner = _owners[key] = _Owner(self.claims_folder)
        return owner

    # --- publish --------------------------------------------------------------------------------
    def _put(self, queue, payload, **kwargs):
        name = f"{int(round(monotonic() * 1000))}_{uuid.uuid4()}.{queue}.msg"
        self._write_atomically(Path(self.data_folder_out) / name, str_to_bytes(dumps(payload)))

    def _write_atomically(self, target: Path, data: bytes) -> None:
        temporary = self.tmp_folder / f"{uuid.uuid4().hex}.part"
        try:
            fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            try:
                view = memoryview(data)
                while view:
                    view = view[os.write(fd, view) :]
                os.fsync(fd)
            finally:
                os.close(fd)
            os.rename(temporary, target)
        except OSError as exc:
            temporary.unlink(missing_ok=True)
            raise filesystem.ChannelError(f"Cannot add message {target.name!r} to the queue") from exc

    # --- take -----------------------------------------------------------------------------------
    def _get(self, queue):
        self._recover_dead_claims()
        wanted = f"{queue}.msg"
        folder = Path(self.data_folder_in)
        for name in sorted(os.listdir(folder)):
            if name.partition(".")[2] != wanted:
                continue
            owner = self._owner()
            claim = owner.folder / name
            try:
                os.rename(folder / name, claim)
            except OSError:
                continue  # another worker took it first
            try:
                payload = loads(bytes_to_str(claim.read_bytes()))
                delivery_tag = payload["properties"]["delivery_tag"]
            except (ValueError, TypeError, KeyError) as exc:
                self._unreadable(claim, folder / name, exc)
                continue
            except OSError as exc:
                raise filesystem.ChannelError(f"Cannot read message {name!r} from the queue") from exc
            self._claimed[delivery_tag] = str(claim)
            return payload
        raise Empty()

    def _unreadable(self, claim: Path, original: Path, exc: Exception) -> None:
        try:
            age = time.time() - claim.stat().st_mtime
        except OSError:
            return
        if age < self.corrupt_after:
            # Possibly still being written by an older, non-atomic publisher: look again later.
            try:
                os.rename(claim, original)
            except OSError:
                pass
            return
        self.bad_folder.mkdir(mode=0o700, parents=True, exist_ok=True)
        try:
            os.rename(claim, self.bad_folder / claim.name)
        except OSError:
            claim.unlink(missing_ok=True)
        log.error("broker: message %s is not readable (%s); moved to %s", claim.name, exc, self.bad_folder)

    # --- acknowledge, reject, restore -------------------------------------------------------------
    def basic_ack(self, delivery_tag, multiple=False):
        super().basic_ack(delivery_tag, multiple=multiple)
        self._forget(delivery_tag)

    def basic_reject(self, delivery_tag, requeue=False):
        # With requeue the QoS calls _restore (the claim goes back to the queue); without, it is done.
        super().basic_reject(delivery_tag, requeue=requeue)
        self._forget(delivery_tag)

    def _restore(self, message):
        claim = self._claimed.pop(message.delivery_tag, None)
        if claim is not None:
            try:
                os.rename(claim, Path(self.data_folder_in) / Path(claim).name)  # back in its old place
                return
            except OSError:
                pass
        super()._restore(message)

    def _forget(self, delivery_tag) -> None:
        claim = self._claimed.pop(delivery_tag, None)
        if claim is not None:
            Path(claim).unlink(missing_ok=True)

    # --- a dead worker's messages ----------------------------------------------------------------
    def _recover_dead_claims(self) -> None:
        now = monotonic()
        if now - Channel._last_recovery < 1.0:
            return
        Channel._last_recovery = now
        # A publisher killed between write and rename leaves a `.part` file behind: never a message.
        for leftover in self.tmp_folder.glob("*.part"):
            try:
                if time.time() - leftover.stat().st_mtime > 3600:
                    leftover.unlink()
            except OSError:
                pass
        recover_dead_claims(
            self.claims_folder,
            Path(self.data_folder_in),
            redeliver_after=self.redeliver_after,
            keep=self._owner().id,
        )


def recover_dead_claims(claims: Path, queue: Path, *, redeliver_after: float, keep: str = "") -> int:
    """Rename the messages of claim folders whose owner process is gone back into the queue, once the
    owner has been found gone for `redeliver_after` seconds. Returns how many came back."""
    restored = 0
    try:
        names = os.listdir(claims)
    except FileNotFoundError:
        return 0
    for name in names:
        if not name.endswith(".lock") or name[: -len(".lock")] == keep:
            continue
        owner = name[: -len(".lock")]
        try:
            fd = os.open(claims / name, os.O_RDWR)
        except OSError:
            continue
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                continue  # its process is alive (or another worker is recovering it right now)
            dead = claims / f"{owner}{_DEAD_MARK}"
            if not dead.exists():
                dead.touch(mode=0o600)
            if redeliver_after > 0 and time.time() - dead.stat().st_mtime < redeliver_after:
                continue
            folder = claims / owner
            count = 0
            for message in sorted(os.listdir(folder)) if folder.is_dir() else []:
                try:
                    os.rename(folder / message, queue / message)
                    count += 1
                except OSError:
                    pass
            try:
                folder.rmdir()
            except OSError:
                pass
            dead.unlink(missing_ok=True)
            (claims / name).unlink(missing_ok=True)
            restored += count
            if count:
                log.warning(
                    "broker: %d unacknowledged message(s) of a worker that died are queued again", count
                )
        finally:
            os.close(fd)
    return restored


class Transport(filesystem.Transport):
    """kombu's filesystem transport with the Channel above (same URL, folders and options)."""

    Channel = Channel
