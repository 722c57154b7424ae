"""Run the platform: the ASGI server (daphne, or uvicorn with `--server uvicorn`) and, unless
--no-worker, one local Celery worker.

Ctrl-C (or SIGTERM) stops both. A worker that exits on its own (killed, out of memory, a crash) is
started again after a back-off (1 s, 2 s, 4 s … at most WORKER_RESTART_MAX_DELAY; back to 1 s once a
worker has run WORKER_RESTART_RESET_AFTER seconds), each restart logged; the web server stays up
meanwhile. If the web server exits, everything stops (exit status 1). Every
T4DM_REAP_INTERVAL_SECONDS it also looks for running jobs whose worker stopped heartbeating (Celery
beat is not part of the embedded default, so the web side does this; `t4dm_reap_lost_jobs` is the
same check for a cron job).
"""

from __future__ import annotations

import json
import signal
import socket
import subprocess
import sys
import time

from django.conf import settings
from django.core.management.base import BaseCommand


class Command(BaseCommand):
    help = "Start the ASGI server and a local Celery worker together."

    def add_arguments(self, parser):
        parser.add_argument("--host", default="127.0.0.1")
        parser.add_argument("--port", default="8000")
        parser.add_argument(
            "--no-worker", action="store_true", help="production: workers are started separately"
        )
        parser.add_argument(
            "--server",
            choices=["daphne", "uvicorn"],
            default="daphne",
            help="the ASGI server; `make web` (production) uses uvicorn: less CPU per request",
        )

    def handle(self, *args, host, port, no_worker, server="daphne", **options):
        access_log = settings.DATA_DIR / "logs" / "access.log"
        access_log.parent.mkdir(parents=True, exist_ok=True)
        commands = {"web": web_command(server, host, str(port), access_log)}
        if not no_worker:
            commands["worker"] = worker_command()
            # Serving (/v1/chat/completions) has its own worker: a training job must not hold it up.
            commands["serving"] = [
                sys.executable,
                str(settings.BASE_DIR / "manage.py"),
                "t4dm_serving_worker",
            ]
        processes = {name: subprocess.Popen(cmd) for name, cmd in commands.items()}
        self.stdout.write(self.style.SUCCESS(f"T4DM is up at http://{host}:{port}/  (Ctrl-C stops it)"))
        worker = _WorkerSupervisor(commands.get("worker"), processes.get("worker"), self)
        serving = _WorkerSupervisor(commands.get("serving"), processes.get("serving"), self, name="serving")

        stopping = False

        def stop(*_):
            nonlocal stopping
            stopping = True

        signal.signal(signal.SIGINT, stop)
        signal.signal(signal.SIGTERM, stop)
        interval = settings.REAP_INTERVAL_SECONDS
        # A web side that was just (re)started gives workers one full timeout, counted from when it
        # accepts connections, to get a heartbeat through before it judges them: their last heartbeats
        # are old because the server itself was away.
        next_reap = float("inf")
        try:
            while not stopping and processes["web"].poll() is None:
                time.sleep(0.2)
                if not stopping:
                    processes.update(worker.check())
                    processes.update(serving.check())
                if next_reap == float("inf") and _accepting(host, port):
                    next_reap = time.monotonic() + max(interval, settings.HEARTBEAT_TIMEOUT)
                if interval and time.monotonic() >= next_reap:
                    next_reap = time.monotonic() + interval
                    self._reap_lost_jobs()
        finally:
            for process in processes.values():
                if process.poll() is None:
                    process.terminate()
            deadline = time.monotonic() + 15
            for process in processes.values():
                try:
                    process.wait(max(0.1, deadline - time.monotonic()))
                except subprocess.TimeoutExpired:
                    process.kill()
        if not stopping:
            self.stderr.write(f"stopped because web exited (status {processes['web'].returncode})")
            sys.exit(1)
        self.stdout.write("T4DM stopped.")

    def _reap_lost_jobs(self) -> None:
        from experiments.services import jobs_reap_lost

        try:
            for job in jobs_reap_lost():
                self.stdout.write(f"{job.public_id}: its worker stopped heartbeating; now {job.status}")
        except Exception as exc:  # the database may be briefly locked or away; try again next round
            self.stderr.write(f"lost-job check failed: {exc}")
        from t4dm_site.housekeeping import prune_outboxes

        try:
            prune_outboxes()
        except Exception as exc:  # as above: next round
            self.stderr.write(f"outbox pruning failed: {exc}")


WORKER_RESTART_FIRST_DELAY = 1.0
WORKER_RESTART_MAX_DELAY = 30.0
WORKER_RESTART_RESET_AFTER = 60.0  # seconds of running after which the next restart is quick again


class _WorkerSupervisor:
    """Restarts the local worker when it exits, with an exponential back-off (never the web server)."""

    def __init__(
        self,
        command: list[str] | None,
        process: subprocess.Popen | None,
        out: BaseCommand,
        name: str = "worker",
    ):
        self.command, self.process, self.out, self.name = command, process, out, name
        self.started = time.monotonic()
        self.delay = WORKER_RESTART_FIRST_DELAY
        self.restart_at: float | None = None
        self.restarts = 0

    def check(self) -> dict[str, subprocess.Popen]:
        """Called every loop: notices an exit, schedules and performs the restart."""
        if self.process is None:
            return {}
        now = time.monotonic()
        if self.restart_at is None:
            code = self.process.poll()
            if code is None:
                return {}
            ran = now - self.started
            if ran >= WORKER_RESTART_RESET_AFTER:
                self.delay = WORKER_RESTART_FIRST_DELAY
            self.restart_at = now + self.delay
            self.out.stderr.write(
                f"{self.name} (pid {self.process.pid}) exited with status {code} after {ran:.0f} s; "
                f"restarting it in {self.delay:g} s"
            )
            self.delay = min(self.delay * 2, WORKER_RESTART_MAX_DELAY)
            return {}
        if now < self.restart_at:
            return {}
        self.restart_at = None
        self.restarts += 1
        self.process = subprocess.Popen(self.command)
        self.started = time.monotonic()
        self.out.stdout.write(f"{self.name} restarted (restart {self.restarts}, pid {self.process.pid})")
        return {self.name: self.process}


def _accepting(host: str, port: str) -> bool:
    try:
        with socket.create_connection(("127.0.0.1" if host in ("0.0.0.0", "::") else host, int(port)), 0.5):
            return True
    except OSError:
        return False


def web_command(server: str, host: str, port: str, access_log) -> list[str]:
    """The ASGI server's command line; both write the access log to `access_log`."""
    if server == "daphne":
        return [sys.executable, "-m", "daphne", "-b", host, "-p", port,
                "--access-log", str(access_log), "t4dm_site.asgi:application"]  # fmt: skip
    # uvicorn with httptools and uvloop (`uvicorn[standard]`), websockets through the `websockets`
    # package. No proxy-header rewriting: like daphne, the app sees the peer's address and judges
    # X-Forwarded-For itself (T4DM_TRUSTED_PROXY_HOPS, t4dm_site/ratelimit.py).
    log_config = access_log.parent / "uvicorn-logging.json"
    log_config.write_text(json.dumps(_uvicorn_logging(access_log)))
    return [sys.executable, "-m", "uvicorn", "--host", host, "--port", port, "--loop", "uvloop",
            "--http", "httptools", "--ws", "websockets", "--no-proxy-headers", "--no-server-header",
            "--log-config", str(log_config), "t4dm_site.asgi:application"]  # fmt: skip


def _uvicorn_logging(access_log) -> dict:
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {
            "default": {"format": "%(asctime)s %(levelname)s %(name)s: %(message)s"},
            "access": {"format": "%(asctime)s %(message)s"},
        },
        "handlers": {
            "default": {
                "class": "logging.StreamHandler",
                "formatter": "default",
                "stream": "ext://sys.stderr",
            },
            "access": {"class": "logging.FileHandler", "formatter": "access", "filename": str(access_log)},
        },
        "loggers": {
            "uvicorn": {"handlers": ["default"], "level": "INFO", "propagate": False},
            "uvicorn.error": {"level": "INFO"},
            "uvicorn.access": {"handlers": ["access"], "level": "INFO", "propagate": False},
        },
    }


def worker_command() -> list[str]:
    return [
        sys.executable,
        "-m",
        "celery",
        "-A",
        "t4dm_site",
        "worker",
        "-Q",
        settings.WORKER_QUEUES,
        "-P",
        "solo",  # one job at a time per worker process (one process per GPU)
        "-n",
        "t4dm-local@%h",
        "--loglevel",
        "INFO",
        "--without-gossip",
        "--without-mingle",
    ]
