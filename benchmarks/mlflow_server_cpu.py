"""Web-process CPU per one-step MLflow logging request: Django's path vs the lean path (t4dm_site/fast_mlflow.py).

    .venv/bin/python benchmarks/mlflow_server_cpu.py [--rounds 4] [--requests 100] [--variants uvicorn:0,uvicorn:1]

Production mode (tests/platform.py `production_web`: PostgreSQL, Redis), one web process per variant
(server:T4DM_FAST_INGEST), all up at once on the same database. Each round runs every variant (the order
reversed every other round) and, per variant, two phases: 4 clients, each with its own fresh MLflow run
and the admin's API token, post `--requests` requests of one step each, as the `mlflow` client sends
them live: `runs/log-batch` with 2 metrics (`mlflow.log_metrics`) and `runs/log-metric`
(`mlflow.log_metric`). The server's CPU time (process and children, psutil) is read before and after.
Prints req/s and web CPU ms per request; medians and spreads at the end. The machine is shared: compare
variants within one run.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.ingest_server_cpu import cpu_seconds  # noqa: E402


def blast(url: str, path: str, token: str, clients: list[list[bytes]]) -> float:
    import httpx

    errors: list[str] = []
    barrier = threading.Barrier(len(clients) + 1)

    def client(bodies: list[bytes]) -> None:
        headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
        with httpx.Client(headers=headers, timeout=60) as http:
            http.get(url + "/login/")  # open the connection before the clock
            barrier.wait()
            for body in bodies:
                answer = http.post(f"{url}/api/2.0/mlflow/{path}", content=body)
                if answer.status_code != 200 or answer.content != b"{}":
                    errors.append(f"HTTP {answer.status_code}: {answer.text[:200]}")
                    return

    threads = [threading.Thread(target=client, args=(c,)) for c in clients]
    for thread in threads:
        thread.start()
    barrier.wait()
    started = time.perf_counter()
    for thread in threads:
        thread.join()
    if errors:
        raise RuntimeError(errors[:2])
    return time.perf_counter() - started


def batch_bodies(run_id: str, requests: int) -> list[bytes]:
    now = int(time.time() * 1000)
    return [
        json.dumps(
            {
                "run_id": run_id,
                "metrics": [
                    {"key": key, "value": 1.0 / (step + 1), "timestamp": now + step, "step": step}
                    for key in ("loss", "lr")
                ],
                "params": [],
                "tags": [],
            }
        ).encode()  # fmt: skip
        for step in range(requests)
    ]


def metric_bodies(run_id: str, requests: int) -> list[bytes]:
    now = int(time.time() * 1000)
    return [
        json.dumps(
            {
                "run_id": run_id,
                "run_uuid": run_id,
                "key": "loss",
                "value": 1.0 / (step + 1),
                "timestamp": now + step,
                "step": step,
            }
        ).encode()  # fmt: skip
        for step in range(requests)
    ]


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--requests", type=int, default=100, help="one-step requests per client and phase")
    parser.add_argument("--variants", default="uvicorn:0,uvicorn:1")
    args = parser.parse_args()
    import logging

    import httpx

    logging.getLogger("httpx").setLevel(logging.WARNING)
    from t4dm_site.management.commands.t4dm_up import web_command
    from tests.platform import free_port, production_web, stop_production_web

    variants = args.variants.split(",")
    phases = (("log-batch, 1 step (2 metrics)", "runs/log-batch", batch_bodies),
              ("log-metric, 1 step", "runs/log-metric", metric_bodies))  # fmt: skip
    data = Path(tempfile.mkdtemp(prefix="t4dm-mlflow-cpu-"))
    platform = production_web(data, asgi_processes=1)
    try:
        env, servers = dict(platform.env), {}
        for variant in variants:
            server, fast = variant.split(":")
            port = str(free_port())
            platform.env = {**env, "T4DM_FAST_INGEST": fast}
            platform.spawn(*web_command(server, "127.0.0.1", port, data / f"access-{variant}.log"),
                           log=data / f"{variant}.log")  # fmt: skip
            servers[variant] = (f"http://127.0.0.1:{port}", platform.processes[-1].pid)
            platform.wait_until_up(url=servers[variant][0])
        token = platform.token

        def new_run() -> str:
            answer = httpx.post(f"{platform.base_url}/api/2.0/mlflow/runs/create", json={"experiment_id": "0"},
                                headers={"Authorization": f"Bearer {token}"}, timeout=60)  # fmt: skip
            return answer.json()["run"]["info"]["run_id"]

        results: dict = {(v, p[0]): [] for v in variants for p in phases}
        print(
            f"4 clients, one web process per variant; variant = server:T4DM_FAST_INGEST; {os.cpu_count()} CPUs"
        )
        for round_ in range(args.rounds):
            for variant in variants if round_ % 2 == 0 else variants[::-1]:
                url, pid = servers[variant]
                for name, path, make in phases:
                    clients = [make(new_run(), args.requests) for _ in range(4)]
                    before = cpu_seconds(pid)
                    seconds = blast(url, path, token, clients)
                    cpu = cpu_seconds(pid) - before
                    requests = sum(len(c) for c in clients)
                    row = (requests / seconds, cpu / requests * 1000)
                    results[(variant, name)].append(row)
                    print(f"  round {round_ + 1} {variant:<10} {name:<30} {row[0]:6.0f} req/s "
                          f"{row[1]:6.2f} ms web CPU/request", flush=True)  # fmt: skip
        print("\nmedians (min-max):")
        for (variant, name), rows in results.items():
            rates, cpus = [r[0] for r in rows], [r[1] for r in rows]
            print(f"  {variant:<10} {name:<30} {statistics.median(rates):6.0f} req/s ({min(rates):.0f}-{max(rates):.0f}) "
                  f"{statistics.median(cpus):6.2f} ms web CPU/request ({min(cpus):.2f}-{max(cpus):.2f})")  # fmt: skip
        load = os.getloadavg()
        print(f"load average {load[0]:.1f} / {load[1]:.1f} / {load[2]:.1f} (1/5/15 min)")
    finally:
        stop_production_web(platform)


if __name__ == "__main__":
    main()
