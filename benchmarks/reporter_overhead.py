"""Platform overhead of live reporting: the engine with the worker's HttpReporter posting to a real
server (daphne, SQLite) against the bare engine (reports kept in memory), same tiny job, alternating
runs in one process.

    .venv/bin/python benchmarks/reporter_overhead.py [--steps 40] [--rounds 2]

Prints the mean step time of each, the difference, and the time the training thread itself spends in
reporter calls per step (the reporter only queues; a background thread posts). On a GPU the training
thread mostly waits for the device, so that in-thread time against a GPU step is the overhead there:
the table relates it to the 8B LoRA step measured on an H200 (benchmarks/results/throughput_h200.json).
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


class TimedReporter:
    """Wraps a reporter: step end times (progress) and time spent inside its calls."""

    def __init__(self, inner) -> None:
        self.inner, self.in_calls, self.step_ends, self.cpu_at_step = inner, 0.0, [], []

    def _timed(self, name, *args, **kwargs):
        started = time.perf_counter()
        try:
            return getattr(self.inner, name)(*args, **kwargs)
        finally:
            self.in_calls += time.perf_counter() - started

    def metrics(self, *a, **k):
        return self._timed("metrics", *a, **k)

    def progress(self, *a, **k):
        self.step_ends.append(time.perf_counter())
        self.cpu_at_step.append(time.process_time())  # all threads: includes the posting thread
        return self._timed("progress", *a, **k)

    def checkpoint(self, *a, **k):
        return self._timed("checkpoint", *a, **k)

    def log(self, *a, **k):
        return self._timed("log", *a, **k)

    def should_stop(self):
        return self._timed("should_stop")


def _setup(data: Path) -> tuple[str, str, Path]:
    import django

    django.setup()
    from django.conf import settings
    from django.contrib.auth import get_user_model
    from django.core.management import call_command

    from datasets_app.models import Dataset, DatasetVersion
    from experiments.models import Experiment, TrainingConfig, TrainingJob

    call_command("migrate", verbosity=0)
    user = get_user_model().objects.create_user("bench")
    dataset = Dataset.objects.create(name="bench", owner=user, task_type="chat")
    version = DatasetVersion.objects.create(
        dataset=dataset,
        number=1,
        content_hash="bench",
        format="jsonl",
        task_type="chat",
        path="/nonexistent",
        validation_status="passed",
    )
    experiment = Experiment.objects.create(name="bench", owner=user)
    config = TrainingConfig.objects.create(
        owner=user, experiment=experiment, dataset_version=version, model_base="t4dm-tiny", task_type="chat"
    )
    job = TrainingJob.objects.create(owner=user, config=config, experiment=experiment)
    token = job.issue_token()
    job.mark_queued()
    job.mark_running(worker="bench")
    return job.public_id, token, Path(settings.ARTIFACT_ROOT)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=40)
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
    data = Path(tempfile.mkdtemp(prefix="t4dm-overhead-"))
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("T4DM_", "DJANGO_", "DATABASE_URL", "CHANNEL_"))
    }
    env.update({"T4DM_DATA_DIR": str(data), "DJANGO_SETTINGS_MODULE": "t4dm_site.settings"})
    os.environ.update(env)
    job_id, token, artifacts = _setup(data)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    base = f"http://127.0.0.1:{port}"
    server = subprocess.Popen(
        [sys.executable, "-m", "daphne", "-b", "127.0.0.1", "-p", str(port), "t4dm_site.asgi:application"],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    import datasets
    import httpx

    from experiments.training.engine import train
    from experiments.training.http_reporter import HttpReporter, PlatformClient
    from experiments.training.reporter import MemoryReporter
    from experiments.training.tiny_model import CORPUS_DIR, build_tiny_model

    datasets.disable_progress_bars()
    import logging

    logging.getLogger("httpx").setLevel(logging.WARNING)
    results: dict[str, list[tuple[float, float, float]]] = {"bare": [], "live": []}
    try:
        for _ in range(300):
            try:
                if httpx.get(base + "/login/", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.1)
        model = build_tiny_model(data / "tiny", seed=0)
        for round_ in range(args.rounds):
            for mode in ("bare", "live"):
                client = PlatformClient(base, job_id, token) if mode == "live" else None
                reporter = TimedReporter(HttpReporter(client) if client else MemoryReporter())
                spec = {
                    "job_id": job_id,
                    "model_base": str(model),
                    "approach": "lora",
                    "task_type": "chat",
                    "hyperparameters": {
                        "max_steps": args.steps,
                        "batch_size": 4,
                        "gradient_accumulation": 1,
                        "learning_rate": 3e-3,
                        "logging_steps": 1,
                        "seed": 0,
                    },
                    "checkpointing": {
                        "save_steps": args.steps // 2,
                        "save_total_limit": 2,
                        "best_only": False,
                    },
                    "dataset": {"train": str(CORPUS_DIR / "knowledge_chat.jsonl"), "validation": None},
                    "output_dir": str(artifacts / "jobs" / job_id / f"{mode}-{round_}"),
                }
                train(spec, reporter)
                if client:
                    reporter.inner.close()
                    client.close()
                ends, cpu = reporter.step_ends[5:], reporter.cpu_at_step[5:]
                step = statistics.mean(b - a for a, b in zip(ends, ends[1:], strict=False))
                cpu_per_step = (cpu[-1] - cpu[0]) / (len(cpu) - 1)
                results[mode].append((step, reporter.in_calls / len(reporter.step_ends), cpu_per_step))
                print(
                    f"round {round_} {mode}: step {step * 1000:.1f} ms, "
                    f"in reporter calls {reporter.in_calls / len(reporter.step_ends) * 1e6:.0f} µs/step",
                    flush=True,
                )
    finally:
        server.terminate()
        server.wait(20)
    bare = statistics.mean(r[0] for r in results["bare"])
    live = statistics.mean(r[0] for r in results["live"])
    in_calls = statistics.mean(r[1] for r in results["live"])
    cpu_bare = statistics.mean(r[2] for r in results["bare"])
    cpu_live = statistics.mean(r[2] for r in results["live"])
    gpu_step = None
    measured = ROOT / "benchmarks" / "results" / "throughput_h200.json"
    if measured.is_file():
        row = next(r for r in json.loads(measured.read_text()) if r["case"] == "8b-lora")
        gpu_step = 16 * row["mean_len"] / row["t4dm"]["tokens_per_sec"]  # samples per step x mean length
    print(f"\n{'':34} {'bare':>10} {'live':>10} {'overhead':>9}")
    print(
        f"{'CPU step, tiny LoRA (ms)':34} {bare * 1000:10.1f} {live * 1000:10.1f} {100 * (live - bare) / bare:8.1f}%"
    )
    print(f"{'process CPU per step (ms)':34} {cpu_bare * 1000:10.1f} {cpu_live * 1000:10.1f}")
    print(f"{'training thread in reporter (µs/step)':34} {'':>10} {in_calls * 1e6:10.0f}")
    if gpu_step:
        extra_cpu = max(0.0, cpu_live - cpu_bare)
        print(f"{'H200 8B LoRA step (ms)':34} {gpu_step * 1000:10.0f}")
        print(f"{'  in-thread reporter time / step':34} {'':>10} {'':>10} {100 * in_calls / gpu_step:8.3f}%")
        print(
            f"{'  all reporting CPU / step (bound)':34} {'':>10} {'':>10} {100 * extra_cpu / gpu_step:8.3f}%"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
