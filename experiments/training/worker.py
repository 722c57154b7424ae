"""What a Celery worker does with one job, without Django: fetch the spec over HTTP, train with the
engine, report through HttpReporter, and set the final status. A GPU box needs only the broker URL,
the server URL and the artifact storage — never database credentials."""

from __future__ import annotations

import datetime
import json
import logging
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
import traceback
from pathlib import Path

import httpx

from experiments.training.fencing import (
    ATTEMPT_ENV,
    AttemptFence,
    FencedError,
    fence_register,
    fence_unregister,
)
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


def run_job(*, server_url: str, job_id: str, token: str, name: str | None = None, node: int = 0) -> str:
    """Train one job; returns the status it ended in ("skipped" when there was nothing to run).

    ``node``: which of a multi-node job's M messages this is (experiments/training/rendezvous.py):
    node 0 claims the job and publishes the rendezvous endpoint, the others wait for it."""
    from experiments.training.engine import train  # heavy imports only once there is work

    _quiet_libraries()

    client = PlatformClient(server_url, job_id, token)
    fence: AttemptFence | None = None
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
        reason = refusal_reason(spec, gpu_info())
        if reason:
            # Hand it back: the platform queues it again for another worker (or fails it in the end).
            log.warning("job %s: refused: %s", job_id, reason)
            try:
                client.refuse(worker=name or worker_name(), reason=reason)
            except PlatformError as exc:
                if node == 0 or exc.status != 409:
                    raise
                # Another node already runs it: its rendezvous times out without this one and fails.
                log.warning("job %s: node %d could not hand it back: %s", job_id, node, exc)
            return "refused"
        gpus = int((spec.get("resources") or {}).get("gpus") or 1)
        nodes = int((spec.get("hyperparameters") or {}).get("nodes") or 1)
        endpoint = None
        if node > 0:
            from experiments.training import rendezvous

            try:
                endpoint = rendezvous.wait_for_endpoint(client, timeout=rendezvous.join_timeout())
            except PlatformError as exc:
                if exc.status in (401, 403, 409):  # requeued or ended before this node joined
                    log.info("job %s: node %d has nothing to join (%s)", job_id, node, exc)
                    return "skipped"
                raise
            except TimeoutError as exc:
                log.warning("job %s: node %d: %s", job_id, node, exc)
                return "skipped"
        elif nodes > 1:
            try:
                client.status("running", worker=name or worker_name())
            except PlatformError as exc:
                if exc.status not in (401, 403, 409):
                    raise
                # Another node of this job refused it meanwhile: it was requeued under a new token.
                log.info("job %s: node 0 has nothing to claim (%s)", job_id, exc)
                return "skipped"
        else:
            client.status("running", worker=name or worker_name())
        # Several GPUs or nodes: the launched run's rank 0 reports itself; one GPU: this process reports.
        reporter = HttpReporter(client) if gpus == 1 and nodes == 1 else None
        # Fencing: this attempt raises the job folder's fence; an earlier attempt still running (its
        # worker was declared lost, then woke) sees it and writes nothing more, and so does this one
        # once a later attempt raises it or the platform refuses its reports.
        fence = AttemptFence(
            spec["output_dir"],
            int(spec.get("attempt") or 0),
            # Under torchrun the ranks save, each with a fence from ATTEMPT_ENV (the fence file only):
            # nothing in this process would ask the platform.
            confirm=reporter.still_current if reporter is not None else None,
        )
        try:
            fence.claim()
            fence_register(fence)
            if nodes > 1:
                from experiments.training import rendezvous

                if node == 0:
                    endpoint = rendezvous.pick_endpoint()
                    rendezvous.publish(client, endpoint)
                client.event(
                    f"node {node} ({name or worker_name()}) joins the {nodes}-node rendezvous at {endpoint} "
                    f"with {gpus} process{'es' if gpus > 1 else ''}"
                )
                result = train_distributed(
                    spec,
                    gpus,
                    server_url=server_url,
                    token=token,
                    attempt=fence.attempt,
                    nodes=nodes,
                    endpoint=endpoint,
                    is_host=node == 0,
                    node=node,
                )
                if result is None:  # global rank 0 ran on another node, which reports the end
                    log.info("job %s: node %d finished its part", job_id, node)
                    return "node-finished"
            elif reporter is None:
                client.event(
                    f"launching {gpus} processes with torchrun (one per GPU; data parallel, or sharded "
                    "with FSDP2 when asked for or one GPU does not hold the job)"
                )
                result = train_distributed(
                    spec, gpus, server_url=server_url, token=token, attempt=fence.attempt
                )
            else:
                result = train(spec, reporter)
        except FencedError as exc:
            if reporter is not None:
                reporter.close(timeout=5)
            log.warning("job %s: this run stopped without writing more: %s", job_id, exc)
            return "abandoned"
        except Exception as exc:
            from experiments.training.failures import describe_failure

            if reporter is not None:
                reporter.close(timeout=30)
            # Out of memory says what to change; a failed checkpoint says where and why (failures.py).
            message = describe_failure(exc, hyperparameters=spec.get("hyperparameters"))
            log.error("job %s failed: %s\n%s", job_id, message, traceback.format_exc())
            return _report_final(client, job_id, "failed", error=message)
        if reporter is not None and not reporter.close():
            log.warning("job %s: some reports could not be delivered", job_id)
        final = "cancelled" if result.get("stopped") == "cancelled" else "succeeded"
        return _report_final(
            client,
            job_id,
            final,
            final_model_path=result.get("final_model_path", ""),
            result=_summary(result),
        )
    finally:
        if fence is not None:
            fence_unregister(fence)
        _current_job["job_id"] = None
        _job_changed.set()
        client.close()


def offered_gpu_memory_mb(info: dict) -> int | None:
    """GPU memory this worker offers a job: T4DM_WORKER_GPU_MEMORY_MB (a share of a GPU, a MIG slice),
    else the GPU's total; None on a machine without a GPU."""
    override = os.environ.get("T4DM_WORKER_GPU_MEMORY_MB", "").strip()
    if override:
        return int(override)
    return info.get("gpu_memory_total_mb") if info.get("gpu_count") else None


def refusal_reason(spec: dict, info: dict) -> str | None:
    """Why this worker cannot run the job, or None: the estimate's GPU memory (per GPU) is more than
    its GPU has, or the job asks for more GPUs than it has (CPU runs are never refused here)."""
    resources = spec.get("resources") or {}
    hp = spec.get("hyperparameters") or {}
    gpus = int(resources.get("gpus") or 1)
    if hp.get("device") == "cpu":
        return None
    if gpus > 1 and int(info.get("gpu_count") or 0) < gpus:
        return f"needs {gpus} GPUs; this worker has {int(info.get('gpu_count') or 0)}"
    needed, offered = resources.get("gpu_memory_mb"), offered_gpu_memory_mb(info)
    if needed and offered is not None and offered < needed:
        return (
            f"needs {needed:,} MiB of GPU memory (estimate); this worker offers {offered:,} MiB"
            f"{' on ' + info['gpu_name'] if info.get('gpu_name') else ''}"
        )
    return None


def train_distributed(
    spec: dict,
    processes: int,
    *,
    server_url: str | None,
    token: str | None,
    timeout: float | None = None,
    attempt: int | None = None,
    nodes: int = 1,
    endpoint: str | None = None,
    is_host: bool = False,
    node: int = 0,
) -> dict | None:
    """Run the engine in ``processes`` data-parallel processes with torchrun (one per GPU); rank 0
    reports to the platform and writes the result. Raises with the run's last output on failure.

    ``nodes`` > 1: this machine's share of a multi-node run, joined through the c10d rendezvous at
    ``endpoint`` (``is_host``: this node serves it); returns None on the nodes without global rank 0."""
    from experiments.training import rendezvous

    with tempfile.TemporaryDirectory(prefix="t4dm-ddp-") as tmp:
        spec_path, result_path = Path(tmp) / "spec.json", Path(tmp) / "result.json"
        spec_path.write_text(json.dumps(spec))
        if nodes > 1:
            if not endpoint:
                raise ValueError("a multi-node run needs the rendezvous endpoint")
            launch = rendezvous.torchrun_arguments(
                nodes=nodes,
                processes=processes,
                endpoint=endpoint,
                run_id=str(spec.get("job_id") or "t4dm"),
                is_host=is_host,
                timeout=rendezvous.join_timeout(),
            )
        else:
            launch = ["--standalone", f"--nproc-per-node={processes}"]
        command = [
            sys.executable,
            "-m",
            "torch.distributed.run",
            *launch,
            "-m",
            "experiments.training",
            "--config",
            str(spec_path),
            "--result",
            str(result_path),
        ]
        env = dict(os.environ)
        if server_url and token:
            command += ["--report-to", server_url]
            env["T4DM_JOB_TOKEN"] = token  # not on the command line, where `ps` would show it
        if attempt:
            env[ATTEMPT_ENV] = str(attempt)  # the processes check the job folder's fence file
        run = subprocess.run(command, env=env, capture_output=True, text=True, timeout=timeout)
        if nodes > 1 and run.returncode == 0 and not result_path.is_file():
            return None
        if run.returncode != 0 or not result_path.is_file():
            lines = (run.stderr or run.stdout).strip().splitlines()
            # torchrun ends with its own summary; the processes' exception line says what went wrong
            errors = [
                line.strip() for line in lines if re.match(r"^[\w.]*(Error|Exception)\b.*: ", line.strip())
            ]
            detail = errors[0] if errors else "\n".join(lines[-15:])
            what = f"node {node} of the {nodes}-node run" if nodes > 1 else f"the {processes}-process run"
            raise RuntimeError(f"{what} failed (exit {run.returncode}): {detail}")
        return json.loads(result_path.read_text())


def _report_final(
    client: PlatformClient, job_id: str, status: str, *, retry_for: float = 600.0, **fields
) -> str:
    """Report the final status, retrying while the server is away (a restart, a network blip)."""
    deadline, delay = time.monotonic() + retry_for, 0.5
    while True:
        try:
            client.status(status, **fields)
            return status
        except PlatformError as exc:
            # 401: the platform declared this worker lost and requeued the job under a new token (another
            # run resumes it); 409: it was finished meanwhile (or a retried report had landed).
            if exc.status in (401, 403, 409):
                log.warning(
                    "job %s: %s not recorded, the job was taken from this worker (%s)", job_id, status, exc
                )
                return "abandoned"
            raise
        except httpx.HTTPError as exc:
            if time.monotonic() > deadline:
                raise
            log.info("job %s: final status not delivered (%s); retrying in %.1fs", job_id, exc, delay)
            time.sleep(delay)
            delay = min(delay * 2, 5.0)


def _quiet_libraries() -> None:
    """Progress bars and per-request logs drown the worker's own log lines."""
    import datasets
    import transformers

    datasets.disable_progress_bars()
    transformers.utils.logging.disable_progress_bar()
    logging.getLogger("httpx").setLevel(logging.WARNING)


def _summary(result: dict) -> dict:
    # tokens_per_sec with the device, model size and process count: the platform keeps the worker's
    # measured speed per model size class for its time estimates (experiments/throughput.py).
    keys = (
        "final_loss",
        "global_step",
        "total_steps",
        "stopped",
        "best_checkpoint",
        "tokens_per_sec",
        "total_parameters",
        "device",
        "processes",
    )
    return {k: result.get(k) for k in keys}
