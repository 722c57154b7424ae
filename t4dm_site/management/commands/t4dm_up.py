"""Run the platform: the ASGI server (daphne) and, unless --no-worker, one local Celery worker.

Ctrl-C (or SIGTERM) stops both; if either exits, the other is stopped too. Every
T4DM_REAP_INTERVAL_SECONDS it also looks for running jobs whose worker stopped heartbeating (Celery
beat is not part of the embedded default, so the web side does this; `t4dm_reap_lost_jobs` is the
same check for a cron job).
"""

from __future__ import annotations

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

    def handle(self, *args, host, port, no_worker, **options):
        access_log = settings.DATA_DIR / "logs" / "access.log"
        access_log.parent.mkdir(parents=True, exist_ok=True)
        commands = {
            "web": [
                sys.executable,
                "-m",
                "daphne",
                "-b",
                host,
                "-p",
                str(port),
                "--access-log",
                str(access_log),
                "t4dm_site.asgi:application",
            ]
        }
        if not no_worker:
            commands["worker"] = worker_command()
        processes = {name: subprocess.Popen(cmd) for name, cmd in commands.items()}
        self.stdout.write(self.style.SUCCESS(f"T4DM is up at http://{host}:{port}/  (Ctrl-C stops it)"))

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
            while not stopping and all(p.poll() is None for p in processes.values()):
                time.sleep(0.2)
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
        exited = [n for n, p in processes.items() if p.returncode not in (0, -signal.SIGTERM, -signal.SIGINT)]
        if exited and not stopping:
            self.stderr.write(f"stopped because {', '.join(exited)} exited")
            sys.exit(1)
        self.stdout.write("T4DM stopped.")

    def _reap_lost_jobs(self) -> None:
        from experiments.services import jobs_reap_lost

        try:
            for job in jobs_reap_lost():
                self.stdout.write(f"{job.public_id}: its worker stopped heartbeating; now {job.status}")
        except Exception as exc:  # the database may be briefly locked or away; try again next round
            self.stderr.write(f"lost-job check failed: {exc}")


def _accepting(host: str, port: str) -> bool:
    try:
        with socket.create_connection(("127.0.0.1" if host in ("0.0.0.0", "::") else host, int(port)), 0.5):
            return True
    except OSError:
        return False


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
