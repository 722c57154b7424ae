"""What a Celery worker does with one job, without Django: fetch the spec over HTTP, train with the
engine, report through HttpReporter, and set the final status. A GPU box needs only the broker URL,
the server URL and the artifact storage — never database credentials."""

from __future__ import annotations

import datetime
import logging
import shutil
import socket
import subprocess
import sys
import threading
import traceback

import httpx

from experiments.training.http_reporter import HttpReporter, PlatformClient, PlatformError

log = logging.getLogger(__name__)


def worker_name() -> str:
    return f"{socket.gethostname()}"


# The job this process is running, for the heartbeat thread (one job per worker process).
_current_job: dict[str, str | None] = {"job_id": None}
# Set when the current job changes, so the heartbeat reports a start or an end at once.
_job_changed = threading.Event()


def gpu_info() -> dict:
    """GPU name/count/memory of this machine, from nvidia-smi (no CUDA context needed), else torch."""
    info: dict = {"gpu_name": "", "gpu_count": 0, "gpu_memory_total_mb": None, "gpu_memory_free_mb": None}
    if shutil.which("nvidia-smi"):
        try:
            out = subprocess.run(
                ["nvidia-smi", "--query-gpu=name,memory.total,memory.free", "--format=csv,noheader,nounits"],
                capture_output=True,
                text=True,
                timeout=10,
                check=True,
            ).stdout
            rows = [[c.strip() for c in line.split(",")] for line in out.splitlines() if line.strip()]
            if rows:
                return {
                    "gpu_name": rows[0][0],
                    "gpu_count": len(rows),
                    "gpu_memory_total_mb": int(float(rows[0][1])),
                    "gpu_memory_free_mb": int(float(rows[0][2])),
                }
        except (OSError, subprocess.SubprocessError, ValueError, IndexError):
            pass
    torch = sys.modules.get("torch")  # only if already imported: importing torch here costs seconds
    if torch is not None and torch.cuda.is_available():
        free, total = torch.cuda.mem_get_info()
        info.update(
            gpu_name=torch.cuda.get_device_name(0),
            gpu_count=torch.cuda.device_count(),
            gpu_memory_total_mb=total // 2**20,
            gpu_memory_free_mb=free // 2**20,
        )
    return info


class WorkerHeartbeat:
    """A daemon thread that POSTs /worker/heartbeat every `interval` seconds with the shared worker
    secret: GPU state and the current job. The platform marks the worker (and its job) lost when
    these stop for T4DM_HEARTBEAT_TIMEOUT seconds."""

    def __init__(self, *, server_url: str, secret: str, name: str, queue: str, interval: float = 5.0):
        self.name, self.queue, self.interval = name, queue, interval
        self.started_at = datetime.datetime.now(datetime.UTC).isoformat()
        self._http = httpx.Client(
            base_url=server_url.rstrip("/") + "/api/v1",
            headers={"Authorization": f"Bearer {secret}"},
            timeout=10,
        )
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="t4dm-worker-heartbeat", daemon=True)

    def start(self) -> WorkerHeartbeat:
        self._thread.start()
        return self

    def beat(self) -> dict:
        payload = {
            "name": self.name,
            "queue": self.queue,
            "hostname": socket.gethostname(),
            "current_job_id": _current_job["job_id"],
            "started_at": self.started_at,
            **gpu_info(),
        }
        response = self._http.post("/worker/heartbeat", json=payload)
        response.raise_for_status()
        return response.json()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self.beat()
            except httpx.HTTPError as exc:
                log.warning("worker heartbeat failed: %s", exc)
            except Exception:  # never let the heartbeat thread die: the worker would look lost
                log.exception("worker heartbeat failed")
            _job_changed.wait(self.interval)
            _job_changed.clear()

    def stop(self) -> None:
        self._stop.set()
        _job_changed.set()
        self._thread.join(timeout=self.interval + 11)
        self._http.close()


def run_job(*, server_url: str, job_id: str, token: str, name: str | None = None) -> str:
    """Train one job; returns the status it ended in ("skipped" when there was nothing to run)."""
    from experiments.training.engine import train  # heavy imports only once there is work

    _quiet_libraries()

    client = PlatformClient(server_url, job_id, token)
    _current_job["job_id"] = job_id
    _job_changed.set()
    try:
        try:
            spec = client.spec()
        except PlatformError as exc:
            # 409: cancelled or finished before this worker got to it. 401: a stale message whose job
            # was requeued with a new token after its worker was lost; the new message runs it.
            if exc.status in (401, 403, 409):
                log.info("job %s: nothing to run (%s)", job_id, exc)
                return "skipped"
            raise
        client.status("running", worker=name or worker_name())
        reporter = HttpReporter(client)
        try:
            result = train(spec, reporter)
        except Exception as exc:
            reporter.close(timeout=30)
            message = f"{type(exc).__name__}: {exc}"
            log.error("job %s failed: %s\n%s", job_id, message, traceback.format_exc())
            client.status("failed", error=message)
            return "failed"
        if not reporter.close():
            log.warning("job %s: some reports could not be delivered", job_id)
        final = "cancelled" if result.get("stopped") == "cancelled" else "succeeded"
        client.status(final, final_model_path=result.get("final_model_path", ""), result=_summary(result))
        return final
    finally:
        _current_job["job_id"] = None
        _job_changed.set()
        client.close()


def _quiet_libraries() -> None:
    """Progress bars and per-request logs drown the worker's own log lines."""
    import datasets
    import transformers

    datasets.disable_progress_bars()
    transformers.utils.logging.disable_progress_bar()
    logging.getLogger("httpx").setLevel(logging.WARNING)


def _summary(result: dict) -> dict:
    keys = ("final_loss", "global_step", "total_steps", "stopped", "best_checkpoint")
    return {k: result.get(k) for k in keys}
