"""Web-process CPU per worker-ingest request: daphne vs uvicorn, the lean ingest path on vs off.

    .venv/bin/python benchmarks/ingest_server_cpu.py [--rounds 3] [--requests 50]

Production mode (tests/platform.py `production_web`: PostgreSQL, Redis), one web process per variant, all
up at once on the same database: daphne as the tests start it, uvicorn as `make web` starts it
(`t4dm_up --server uvicorn`), each with `T4DM_FAST_INGEST` 0 and 1 (a variant is
server:T4DM_FAST_INGEST[:T4DM_INGEST_BROADCAST_WINDOW_MS[:T4DM_INGEST_SYNCHRONOUS_COMMIT]]). Each round runs every variant (the
order reversed every other round): 4 clients, each with its own fresh job and job token, post
`--requests` one-step (2-point) batches, then 4 × 1,000-point batches; the server's CPU time
(process and children, psutil) is read before and after. Prints req/s, points/s and CPU ms per request;
medians at the end. The machine is shared: compare variants within one run.
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


def cpu_seconds(pid: int) -> float:
    import psutil

    root = psutil.Process(pid)
    return sum(p.cpu_times().user + p.cpu_times().system for p in [root, *root.children(recursive=True)])


def blast(url: str, clients: list[tuple[str, str, list[bytes]]]) -> float:
    import httpx

    errors: list[str] = []
    barrier = threading.Barrier(len(clients) + 1)

    def client(job: str, token: str, bodies: list[bytes]) -> None:
        headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
        with httpx.Client(headers=headers, timeout=60) as http:
            http.get(url + "/login/")  # open the connection before the clock
            barrier.wait()
            for body in bodies:
                answer = http.post(f"{url}/api/v1/ingest/jobs/{job}/metrics", content=body)
                if answer.status_code != 200 or answer.json()["duplicates"]:
                    errors.append(f"HTTP {answer.status_code}: {answer.text[:200]}")
                    return

    threads = [threading.Thread(target=client, args=c) for c in clients]
    for thread in threads:
        thread.start()
    barrier.wait()
    started = time.perf_counter()
    for thread in threads:
        thread.join()
    if errors:
        raise RuntimeError(errors[:2])
    return time.perf_counter() - started


def bodies(steps: int, per_request: int) -> list[bytes]:
    return [
        json.dumps(
            {
                "points": [
                    {"key": f"m{k}", "step": s, "value": 1.0 / (s + 1)}
                    for s in range(first, first + per_request)
                    for k in range(2)
                ]
            }  # fmt: skip
        ).encode()
        for first in range(0, steps, per_request)
    ]


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--requests", type=int, default=50, help="one-step requests per client")
    parser.add_argument("--variants", default="daphne:0,daphne:1,uvicorn:0,uvicorn:1")
    args = parser.parse_args()
    import logging

    logging.getLogger("httpx").setLevel(logging.WARNING)
    from t4dm_site.management.commands.t4dm_up import web_command
    from tests.platform import free_port, production_web, running_jobs, stop_production_web

    variants = args.variants.split(",")
    phases = (("one step (2 points)/request", args.requests, 1), ("1,000 points/request", 2000, 500))
    data = Path(tempfile.mkdtemp(prefix="t4dm-server-cpu-"))
    platform = production_web(data, asgi_processes=1)
    try:
        env, servers = dict(platform.env), {}
        for variant in variants:
            server, fast, window, commit = [*variant.split(":"), "20", "on"][:4]
            port = str(free_port())
            platform.env = {
                **env,
                "T4DM_FAST_INGEST": fast,
                "T4DM_INGEST_BROADCAST_WINDOW_MS": window,
                "T4DM_INGEST_SYNCHRONOUS_COMMIT": commit,
            }
            platform.spawn(*web_command(server, "127.0.0.1", port, data / f"access-{variant}.log"),
                           log=data / f"{variant}.log")  # fmt: skip
            servers[variant] = (f"http://127.0.0.1:{port}", platform.processes[-1].pid)
            platform.wait_until_up(url=servers[variant][0])
        jobs = running_jobs(platform, args.rounds * len(variants) * len(phases) * 4)
        results: dict = {(v, p[0]): [] for v in variants for p in phases}
        print(
            f"4 clients, one web process per variant; variant = server:T4DM_FAST_INGEST; {os.cpu_count()} CPUs"
        )
        for round_ in range(args.rounds):
            for variant in variants if round_ % 2 == 0 else variants[::-1]:
                url, pid = servers[variant]
                for name, steps, per_request in phases:
                    clients = [(*jobs.pop(), bodies(steps, per_request)) for _ in range(4)]
                    before = cpu_seconds(pid)
                    seconds = blast(url, clients)
                    cpu = cpu_seconds(pid) - before
                    requests = sum(len(c[2]) for c in clients)
                    row = (requests / seconds, requests * per_request * 2 / seconds, cpu / requests * 1000)
                    results[(variant, name)].append(row)
                    print(f"  round {round_ + 1} {variant:<10} {name:<28} {row[0]:6.0f} req/s {row[1]:8,.0f} points/s "
                          f"{row[2]:6.2f} ms web CPU/request", flush=True)  # fmt: skip
        print("\nmedians:")
        for (variant, name), rows in results.items():
            print(f"  {variant:<10} {name:<28} {statistics.median(r[0] for r in rows):6.0f} req/s "
                  f"{statistics.median(r[1] for r in rows):8,.0f} points/s "
                  f"{statistics.median(r[2] for r in rows):6.2f} ms web CPU/request")  # fmt: skip
        load = os.getloadavg()
        print(f"load average {load[0]:.1f} / {load[1]:.1f} / {load[2]:.1f} (1/5/15 min)")
    finally:
        stop_production_web(platform)


if __name__ == "__main__":
    main()
