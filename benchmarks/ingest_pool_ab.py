"""One-step ingest latency with and without the PostgreSQL connection pool (T4DM_DB_POOL), alternating.

    .venv/bin/python benchmarks/ingest_pool_ab.py [--pairs 3 --requests 600]

Each round starts the production web tier (one daphne process, PostgreSQL, Redis) with the pool on or
off, sends `--requests` one-step batches (2 points) from one client, one after the other, and prints
the median and p90 latency, with GET /login/ as the fixed cost of a request that touches no metric.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def measure(pool: str, requests: int) -> str:
    import httpx

    from tests.platform import production_web, running_jobs, stop_production_web

    os.environ["T4DM_DB_POOL"] = pool
    platform = production_web(Path(tempfile.mkdtemp()), asgi_processes=1)
    try:
        [(job, token)] = running_jobs(platform, 1)
        headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
        url = f"{platform.base_url}/api/v1/ingest/jobs/{job}/metrics"
        times = []
        with httpx.Client(headers=headers) as http:
            for step in range(requests + 20):
                body = json.dumps({"points": [{"key": "a", "step": step, "value": 1.0},
                                              {"key": "b", "step": step, "value": 2.0}]})  # fmt: skip
                started = time.perf_counter()
                response = http.post(url, content=body)
                if step >= 20:  # the first ones warm the server up
                    times.append(time.perf_counter() - started)
                response.raise_for_status()
        fixed = []
        with httpx.Client() as http:
            for _ in range(300):
                started = time.perf_counter()
                http.get(f"{platform.base_url}/login/")
                fixed.append(time.perf_counter() - started)
    finally:
        stop_production_web(platform)
    times.sort()
    return (
        f"T4DM_DB_POOL={pool}: one-step ingest median {statistics.median(times) * 1000:.1f} ms, "
        f"p90 {times[int(len(times) * 0.9)] * 1000:.1f} ms; GET /login/ median {statistics.median(fixed) * 1000:.1f} ms; "
        f"load average {os.getloadavg()[0]:.1f}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--pairs", type=int, default=3)
    parser.add_argument("--requests", type=int, default=600)
    args = parser.parse_args()
    for _ in range(args.pairs):
        for pool in ("0", "1"):
            print(measure(pool, args.requests), flush=True)


if __name__ == "__main__":
    main()
