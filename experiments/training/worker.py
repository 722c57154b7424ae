"""What a Celery worker does with one job, without Django: fetch the spec over HTTP, train with the
engine, report through HttpReporter, and set the final status. A GPU box needs only the broker URL,
the server URL and the artifact storage — never database credentials."""

from __future__ import annotations

import logging
import socket
import traceback

from experiments.training.http_reporter import HttpReporter, PlatformClient, PlatformError

log = logging.getLogger(__name__)


def worker_name() -> str:
    return f"{socket.gethostname()}"


def run_job(*, server_url: str, job_id: str, token: str, name: str | None = None) -> str:
    """Train one job; returns the status it ended in ("skipped" when there was nothing to run)."""
    from experiments.training.engine import train  # heavy imports only once there is work

    _quiet_libraries()

    client = PlatformClient(server_url, job_id, token)
    try:
        try:
            spec = client.spec()
        except PlatformError as exc:
            if exc.status == 409:  # cancelled or finished before this worker got to it
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
