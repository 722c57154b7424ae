"""The worker's side of the ingest path: a Reporter that talks to the platform over HTTP.

The training loop only appends to in-memory buffers (never blocks on the network). A background
thread flushes metric batches at least twice a second, sends progress as a heartbeat, forwards
checkpoints and log lines in order, and retries with exponential backoff when the server is away.
Points are idempotent on (job, key, step) server-side, so a batch that was stored but whose reply
was lost is simply sent again.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from dataclasses import dataclass, field
from typing import Any

import httpx

log = logging.getLogger(__name__)


class PlatformError(Exception):
    """The platform answered with a 4xx: retrying the same request will not help."""

    def __init__(self, status: int, body: Any):
        super().__init__(f"HTTP {status}: {body}")
        self.status = status
        self.body = body


class PlatformClient:
    """HTTP calls a worker makes for one job, authenticated with that job's token."""

    def __init__(self, server_url: str, job_id: str, token: str, *, timeout: float = 10.0):
        self.job_id = job_id
        self._http = httpx.Client(
            base_url=server_url.rstrip("/") + "/api/v1",
            headers={"Authorization": f"Bearer {token}"},
            timeout=timeout,
        )

    def _call(self, method: str, path: str, json: Any = None) -> Any:
        response = self._http.request(method, path, json=json)
        if 400 <= response.status_code < 500:
            try:
                body = response.json()
            except ValueError:
                body = response.text
            raise PlatformError(response.status_code, body)
        response.raise_for_status()
        return response.json()

    def spec(self) -> dict:
        return self._call("GET", f"/worker/jobs/{self.job_id}/spec")

    def status(self, status: str, **fields: Any) -> dict:
        return self._call("POST", f"/worker/jobs/{self.job_id}/status", {"status": status, **fields})

    def progress(self, *, step: int, total_steps: int, epoch: float) -> dict:
        return self._call(
            "POST",
            f"/worker/jobs/{self.job_id}/progress",
            {"step": step, "total_steps": total_steps, "epoch": epoch},
        )

    def metrics(self, points: list[dict]) -> dict:
        return self._call("POST", f"/ingest/jobs/{self.job_id}/metrics", {"points": points})

    def checkpoint(self, *, step: int, path: str, metrics: dict[str, float]) -> dict:
        return self._call(
            "POST",
            f"/worker/jobs/{self.job_id}/checkpoints",
            {"step": step, "path": path, "metrics": metrics},
        )

    def refuse(self, *, worker: str, reason: str) -> dict:
        return self._call("POST", f"/worker/jobs/{self.job_id}/refuse", {"worker": worker, "reason": reason})

    def event(self, message: str, level: str = "info") -> dict:
        return self._call("POST", f"/worker/jobs/{self.job_id}/events", {"message": message, "level": level})

    def close(self) -> None:
        self._http.close()


@dataclass
class _Pending:
    points: list[dict] = field(default_factory=list)
    # Checkpoints and log lines, in order; each is (kind, payload).
    events: list[tuple[str, dict]] = field(default_factory=list)
    progress: dict | None = None


class HttpReporter:
    """Implements experiments.training.reporter.Reporter over PlatformClient."""

    def __init__(
        self,
        client: PlatformClient,
        *,
        flush_interval: float = 0.25,
        heartbeat_interval: float = 2.0,
        max_batch: int = 1000,
        max_backoff: float = 5.0,
    ):
        self.client = client
        self.flush_interval = flush_interval
        self.heartbeat_interval = heartbeat_interval
        self.max_batch = max_batch
        self.max_backoff = max_backoff
        self._pending = _Pending()
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._closing = threading.Event()
        self._cancel_requested = False
        # Set when the platform refuses this run's reports (401/403/409): its attempt was superseded
        # (the worker was declared lost and the job requeued) or the job ended without it. Unlike a
        # cancel, a fenced run must not write anything more (no checkpoint: checkpoints.AttemptFence).
        self.fenced = False
        self._last_heartbeat = 0.0
        self._last_progress: dict | None = None
        self._deadline = float("inf")
        self._failures = 0
        self.sent_points = 0
        self._thread = threading.Thread(target=self._run, name=f"t4dm-reporter-{client.job_id}", daemon=True)
        self._thread.start()

    # --- the Reporter interface: cheap, non-blocking ------------------------------------------------
    def metrics(self, step: int, values: dict[str, float], *, epoch: float | None = None) -> None:
        now = time.time()
        finite = {k: float(v) for k, v in values.items() if math.isfinite(float(v))}
        bad = sorted(set(values) - set(finite))
        with self._lock:
            for key, value in finite.items():
                self._pending.points.append(
                    {"key": key, "step": int(step), "value": value, "wall_time": now, "epoch": epoch}
                )
            if bad:  # the platform rejects non-finite values; say so in the job log instead
                self._pending.events.append(
                    ("event", {"message": f"step {step}: non-finite {', '.join(bad)} not recorded"})
                )

    def progress(self, *, step: int, total_steps: int, epoch: float) -> None:
        with self._lock:
            self._pending.progress = {
                "step": int(step),
                "total_steps": int(total_steps),
                "epoch": float(epoch),
            }

    def checkpoint(self, *, step: int, path: str, metrics: dict[str, float]) -> None:
        with self._lock:
            self._pending.events.append(("checkpoint", {"step": int(step), "path": path, "metrics": metrics}))
        self._wake.set()

    def log(self, message: str) -> None:
        with self._lock:
            self._pending.events.append(("event", {"message": message}))

    def should_stop(self) -> bool:
        return self._cancel_requested or self.fenced

    def still_current(self) -> bool:
        """Whether this run's attempt still runs on the platform, asked now (before a checkpoint or the
        final save). False once a report was refused as superseded; an unreachable platform is not a
        no (the job folder's fence file still guards it)."""
        if self.fenced:
            return False
        try:
            self.client.spec()
        except PlatformError as exc:
            if exc.status in (401, 403, 409):
                self.fenced = True
        except httpx.HTTPError as exc:
            log.info("attempt of %s not confirmed (%s); its fence file guards it", self.client.job_id, exc)
        return not self.fenced

    # --- the background thread ---------------------------------------------------------------------
    def _run(self) -> None:
        while True:
            closing = self._closing.is_set()
            try:
                self._flush_once()
                self._failures = 0
            except PlatformError as exc:
                # 409: this attempt was superseded (the platform declared this worker lost and requeued
                # the job under a new token) or the job ended server-side; 401/403: the token is gone.
                # Either way: stop, and write nothing more (not even the checkpoint a cancel saves).
                if exc.status in (401, 403, 409):
                    self.fenced = True
                log.warning("platform rejected a report for %s: %s", self.client.job_id, exc)
                self._drop_rejected()
            except httpx.HTTPError as exc:
                self._failures += 1
                delay = min(self.max_backoff, 0.25 * 2 ** min(self._failures, 10))
                log.info("platform unreachable (%s); retrying in %.1fs", exc, delay)
                if self._closing.is_set():
                    if self._closing_deadline_passed():
                        return
                    time.sleep(delay)
                else:
                    self._closing.wait(delay)
                continue
            if closing and self._empty():
                return
            if closing and self._closing_deadline_passed():
                return
            self._wake.wait(self.flush_interval)
            self._wake.clear()

    def _empty(self) -> bool:
        with self._lock:
            return not self._pending.points and not self._pending.events and self._pending.progress is None

    def _flush_once(self) -> None:
        # Metrics first, then checkpoints/log lines: a checkpoint's metrics are already stored when it lands.
        while True:
            with self._lock:
                batch = self._pending.points[: self.max_batch]
            if not batch:
                break
            self.client.metrics(batch)
            with self._lock:
                del self._pending.points[: len(batch)]
            self.sent_points += len(batch)
        while True:
            with self._lock:
                if not self._pending.events:
                    break
                kind, payload = self._pending.events[0]
            if kind == "checkpoint":
                self.client.checkpoint(**payload)
            else:
                self.client.event(payload["message"])
            with self._lock:
                self._pending.events.pop(0)
        now = time.monotonic()
        with self._lock:
            progress = self._pending.progress
        if progress is None and self._last_progress and now - self._last_heartbeat > self.heartbeat_interval:
            progress = self._last_progress  # a long step: repeat the last progress as a heartbeat
        if progress is not None:
            ack = self.client.progress(**progress)
            self._last_heartbeat, self._last_progress = now, progress
            self._cancel_requested = self._cancel_requested or bool(ack.get("cancel_requested"))
            with self._lock:
                if self._pending.progress is progress:
                    self._pending.progress = None

    def _drop_rejected(self) -> None:
        """A 4xx means the request itself is wrong; drop what is at the head so the rest can flow."""
        with self._lock:
            if self._pending.points:
                del self._pending.points[: self.max_batch]
            elif self._pending.events:
                self._pending.events.pop(0)
            else:
                self._pending.progress = None

    def _closing_deadline_passed(self) -> bool:
        return time.monotonic() > self._deadline

    def close(self, *, timeout: float = 120.0) -> bool:
        """Flush everything (retrying up to `timeout` seconds). True when nothing was left behind."""
        self._deadline = time.monotonic() + timeout
        self._closing.set()
        self._wake.set()
        self._thread.join(timeout + 1)
        return self._empty()
