"""A buffered, background metric sender for scripts that train outside the platform (T4DMCallback).

`metrics()` only appends to a buffer; a daemon thread posts batches to the ingest endpoint, retrying
with exponential backoff while the server is away. Points are idempotent server-side on
(job, key, step), so a batch that was stored but whose reply was lost is simply sent again.
(The platform's own workers use the fuller experiments.training.http_reporter, which also reports
progress, checkpoints and status.)
"""

from __future__ import annotations

import logging
import math
import threading
import time

import httpx

log = logging.getLogger(__name__)


class MetricReporter:
    def __init__(
        self,
        server_url: str,
        job_id: str,
        token: str,
        *,
        flush_interval: float = 0.25,
        max_batch: int = 1000,
        max_backoff: float = 5.0,
        timeout: float = 10.0,
    ):
        self.job_id = job_id
        self.flush_interval = flush_interval
        self.max_batch = max_batch
        self.max_backoff = max_backoff
        self.sent_points = 0
        self._http = httpx.Client(
            base_url=server_url.rstrip("/") + "/api/v1",
            headers={"Authorization": f"Bearer {token}"},
            timeout=timeout,
        )
        self._points: list[dict] = []
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._closing = threading.Event()
        self._deadline = float("inf")
        self._thread = threading.Thread(target=self._run, name=f"t4dm-metrics-{job_id}", daemon=True)
        self._thread.start()

    def metrics(self, step: int, values: dict[str, float], *, epoch: float | None = None) -> None:
        now = time.time()
        with self._lock:
            for key, value in values.items():
                if math.isfinite(float(value)):  # the platform rejects NaN/inf
                    self._points.append(
                        {
                            "key": key,
                            "step": int(step),
                            "value": float(value),
                            "wall_time": now,
                            "epoch": epoch,
                        }
                    )

    def _post(self, batch: list[dict]) -> None:
        response = self._http.post(f"/ingest/jobs/{self.job_id}/metrics", json={"points": batch})
        if 400 <= response.status_code < 500 and response.status_code != 429:
            # The request itself is wrong: sending it again will not help. Drop it so the rest flow.
            log.warning("T4DM refused %d points for %s: %s", len(batch), self.job_id, response.text[:300])
            return
        response.raise_for_status()

    def _run(self) -> None:
        failures = 0
        while True:
            with self._lock:
                batch = self._points[: self.max_batch]
            if batch:
                try:
                    self._post(batch)
                except httpx.HTTPError as exc:
                    failures += 1
                    if self._closing.is_set() and time.monotonic() > self._deadline:
                        return
                    delay = min(self.max_backoff, 0.25 * 2 ** min(failures, 10))
                    log.info("T4DM unreachable (%s); retrying in %.1fs", exc, delay)
                    time.sleep(delay)
                    continue
                failures = 0
                with self._lock:
                    del self._points[: len(batch)]
                self.sent_points += len(batch)
                continue
            if self._closing.is_set():
                return
            self._wake.wait(self.flush_interval)
            self._wake.clear()

    def pending(self) -> int:
        with self._lock:
            return len(self._points)

    def close(self, *, timeout: float = 120.0) -> bool:
        """Send what is buffered (retrying up to `timeout` seconds). True when nothing was left behind."""
        self._deadline = time.monotonic() + timeout
        self._closing.set()
        self._wake.set()
        self._thread.join(timeout + 1)
        self._http.close()
        return self.pending() == 0
