"""Live load: J jobs streaming R points/s each while V websocket viewers watch, in production mode.

    .venv/bin/python benchmarks/live_load.py [--jobs 10] [--viewers 100] [--rate 10] [--seconds 60]

The production web tier (tests/platform.py `production_web`): a fresh PostgreSQL database, Redis as
the channel layer, and two daphne processes behind it. Each job is a running job with its own job
token; its load generator reports exactly as a training worker does (experiments.training.http_reporter
PlatformClient, POST /api/v1/ingest/jobs/<id>/metrics), producing one "loss" point every 1/R s and
flushing what it has every --flush-interval s (0.25 s: the HttpReporter's default), to one of the two
ASGI processes (job i → process i mod 2). Every job has V/J viewers — the `websockets` client on the
job page's socket /ws/jobs/<id>/, authenticated with an API token — split across both processes, so
half of them only see the job's points through the Redis layer; the viewers run in two client
processes (asyncio).

Measured: every viewer must receive every step of its job (checked by step: missing = dropped;
duplicates counted too), and latency = viewer receipt − start of the POST that carried the point,
p50/p95/max over every (viewer, point). Same clock: everything runs on this machine.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import multiprocessing
import os
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))


def pct(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, math.ceil(q / 100 * len(ordered)) - 1))]


def _viewer_process(specs: list[dict], token: str, expected: int, silence: float, ready, out) -> None:
    """Runs in a client process: one websocket per spec; reports what each one received."""
    from websockets.asyncio.client import connect

    async def one(index: int, spec: dict) -> dict:
        # Like the job page's script: connect, and on any failure reconnect with ?after=<last id>.
        received: dict[int, float] = {}
        duplicates = connects = 0
        last_id = 0
        errors: list[str] = []
        announced = False
        deadline = time.monotonic() + silence
        await asyncio.sleep(index * 0.02)  # a page load is not 50 handshakes in the same millisecond
        while len(received) < expected and time.monotonic() < deadline:
            url = spec["url"].split("?")[0] + f"?after={last_id}"
            try:
                async with connect(
                    url,
                    additional_headers={"Authorization": f"Bearer {token}"},
                    origin=spec["origin"],
                    max_size=2**24,
                    open_timeout=30,
                ) as ws:
                    connects += 1
                    snapshot = json.loads(await asyncio.wait_for(ws.recv(), timeout=30))
                    now = time.time()
                    for step, _value, _t in snapshot.get("series", {}).get("loss", []):
                        received.setdefault(int(step), now)
                    last_id = max(last_id, snapshot.get("last_id", 0))
                    if not announced:
                        announced = True
                        ready.put(1)
                    while len(received) < expected:
                        message = json.loads(await asyncio.wait_for(ws.recv(), timeout=silence))
                        now = time.time()
                        deadline = time.monotonic() + silence
                        if message.get("type") != "points":
                            continue
                        last_id = max(last_id, message["last_id"])
                        for point in message["points"]:
                            if point["step"] in received:
                                duplicates += 1
                            else:
                                received[point["step"]] = now
            except Exception as exc:  # reconnect, as the browser does; reported with the result
                errors.append(f"{type(exc).__name__}: {exc}")
                await asyncio.sleep(0.5)
        if not announced:
            ready.put(1)
        return {
            "job": spec["job"],
            "server": spec["server"],
            "received": received,
            "duplicates": duplicates,
            "connects": connects,
            "errors": errors,
        }

    async def main() -> list:
        return await asyncio.gather(*(one(i, spec) for i, spec in enumerate(specs)))

    out.put(asyncio.run(main()))


def _producer(
    index: int,
    base_url: str,
    job_id: str,
    token: str,
    points: int,
    rate: float,
    flush_interval: float,
    start_at: float,
    posted: dict,
    stats: dict,
) -> None:
    """One job's worker: a point every 1/rate s, flushed every flush_interval s, retried like the
    HttpReporter retries (the server is idempotent on (job, key, step))."""
    from experiments.training.http_reporter import PlatformClient

    client = PlatformClient(base_url, job_id, token, timeout=30)
    pending: list[dict] = []
    next_flush = start_at + flush_interval
    post_times: list[float] = []
    failures = 0
    step = 0

    def flush() -> None:
        nonlocal pending, failures
        if not pending:
            return
        started = time.time()
        for point in pending:
            posted[(index, point["step"])] = started
        backoff = 0.1
        while True:
            try:
                client.metrics(pending)
                break
            except Exception:
                failures += 1
                time.sleep(backoff)
                backoff = min(backoff * 2, 2.0)
        post_times.append((time.time() - started) * 1000)
        pending = []

    try:
        while step < points:
            due = start_at + step / rate
            now = time.time()
            if now >= next_flush:
                flush()
                next_flush = max(next_flush + flush_interval, time.time())
                continue
            if now < due:
                time.sleep(min(due, next_flush) - now)
                continue
            pending.append({"key": "loss", "step": step, "value": 1.0 / (step + 1), "wall_time": now})
            step += 1
        flush()
    finally:
        client.close()
        stats[index] = {"post_ms": post_times, "failures": failures}


def run_load(
    platform,
    *,
    jobs: int,
    viewers: int,
    rate: float,
    seconds: float,
    flush_interval: float = 0.25,
    client_processes: int = 2,
    silence: float = 30.0,
) -> dict:
    """Stream and watch; returns the per-viewer outcome and the latencies (see the module docstring)."""
    from tests.platform import running_jobs

    job_list = running_jobs(platform, jobs)
    servers = platform.base_urls or [platform.base_url]
    points = int(round(rate * seconds))
    specs = []
    for v in range(viewers):
        job = v % jobs
        server = (v // jobs) % len(servers)  # a job's viewers alternate between the ASGI processes
        base = servers[server]
        specs.append(
            {
                "job": job,
                "server": server,
                "origin": base,
                "url": base.replace("http://", "ws://") + f"/ws/jobs/{job_list[job][0]}/?after=0",
            }
        )
    ctx = multiprocessing.get_context("spawn")
    ready, out = ctx.Queue(), ctx.Queue()
    procs = [
        ctx.Process(
            target=_viewer_process,
            args=(specs[i::client_processes], platform.token, points, silence, ready, out),
            daemon=True,
        )
        for i in range(client_processes)
    ]
    for proc in procs:
        proc.start()
    for _ in specs:
        ready.get(timeout=180)
    posted: dict = {}
    stats: dict = {}
    start_at = time.time() + 0.5
    threads = [
        threading.Thread(
            target=_producer,
            args=(
                j,
                servers[j % len(servers)],
                job_id,
                token,
                points,
                rate,
                flush_interval,
                start_at,
                posted,
                stats,
            ),
        )
        for j, (job_id, token) in enumerate(job_list)
    ]
    load_before = os.getloadavg()[0]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    streamed = time.time() - start_at
    results = []
    for _ in procs:
        results.extend(out.get(timeout=silence + 120))
    for proc in procs:
        proc.join(10)
    latencies, missing, duplicates, errors, reconnects = [], 0, 0, [], 0
    for viewer in results:
        received = viewer["received"]
        missing += sum(1 for s in range(points) if s not in received)
        duplicates += viewer["duplicates"]
        errors += viewer["errors"]
        reconnects += max(0, viewer["connects"] - 1)
        for step, at in received.items():
            latencies.append((at - posted[(viewer["job"], step)]) * 1000)
    post_ms = [t for s in stats.values() for t in s["post_ms"]]
    return {
        "jobs": jobs,
        "viewers": len(results),
        "servers": len(servers),
        "points_per_job": points,
        "points": points * jobs,
        "expected_receipts": points * len(results),
        "receipts": len(latencies),
        "missing": missing,
        "viewers_missing": sum(1 for v in results if len(v["received"]) < points),
        "duplicates": duplicates,
        "errors": errors,
        "reconnects": reconnects,
        "viewers_never_connected": sum(1 for v in results if not v["connects"]),
        "latencies": latencies,
        "post_ms": post_ms,
        "posts": len(post_ms),
        "post_failures": sum(s["failures"] for s in stats.values()),
        "streamed_s": streamed,
        "loadavg": (load_before, os.getloadavg()[0]),
    }


def table(result: dict) -> str:
    lat = result["latencies"]
    rows = [
        ("jobs x points/s", f"{result['jobs']} x {result['points_per_job'] / result['streamed_s']:.1f}", ""),
        ("ASGI processes (daphne) behind Redis", str(result["servers"]), "2"),
        ("websocket viewers", str(result["viewers"]), ""),
        ("points streamed", f"{result['points']:,} in {result['streamed_s']:.0f} s", ""),
        ("ingest POSTs (job token)", f"{result['posts']:,}, {result['post_failures']} retried", ""),
        (
            "POST round trip",
            f"p50 {pct(result['post_ms'], 50):.0f} / p95 {pct(result['post_ms'], 95):.0f} ms",
            "",
        ),
        ("receipts (viewer, point)", f"{result['receipts']:,} of {result['expected_receipts']:,}", ""),
        ("dropped points", f"{result['missing']} ({result['viewers_missing']} viewers short)", "0"),
        ("duplicate deliveries", str(result["duplicates"]), "0"),
        (
            "viewer connection failures / reconnects",
            f"{len(result['errors'])} / {result['reconnects']} ({result['viewers_never_connected']} never connected)",
            "",
        ),
        (
            "latency POST -> viewer",
            f"p50 {pct(lat, 50):.0f} / p95 {pct(lat, 95):.0f} / max {max(lat, default=float('nan')):.0f} ms",
            "p95 reported",
        ),
        ("load average (1 min) before / after", "{:.1f} / {:.1f}".format(*result["loadavg"]), ""),
    ]
    header = ("measurement", "result", "target")
    width = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(header)]
    lines = ["  ".join(h.ljust(w) for h, w in zip(header, width, strict=True))]
    lines.append("  ".join("-" * w for w in width))
    lines += ["  ".join(c.ljust(w) for c, w in zip(row, width, strict=True)) for row in rows]
    if result["errors"]:
        lines.append(f"viewer connection errors (then reconnected): {sorted(set(result['errors']))[:3]}")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--jobs", type=int, default=10)
    parser.add_argument("--viewers", type=int, default=100)
    parser.add_argument("--rate", type=float, default=10.0, help="points per second per job")
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--flush-interval", type=float, default=0.25, help="the HttpReporter's default")
    parser.add_argument("--asgi-processes", type=int, default=2)
    args = parser.parse_args()
    import logging

    logging.getLogger("httpx").setLevel(logging.WARNING)
    from tests.platform import production_web, stop_production_web

    data = Path(tempfile.mkdtemp(prefix="t4dm-live-load-"))
    print(
        f"starting PostgreSQL + Redis + {args.asgi_processes} daphne processes (logs in {data}) …", flush=True
    )
    platform = production_web(data, asgi_processes=args.asgi_processes)
    try:
        print(
            f"{args.jobs} jobs x {args.rate:g} points/s for {args.seconds:g} s, {args.viewers} viewers …",
            flush=True,
        )
        result = run_load(
            platform,
            jobs=args.jobs,
            viewers=args.viewers,
            rate=args.rate,
            seconds=args.seconds,
            flush_interval=args.flush_interval,
        )
    finally:
        stop_production_web(platform)
    print()
    print(table(result))
    print(f"\nmachine: {os.cpu_count()} CPUs")
    sys.exit(0 if result["missing"] == 0 and result["duplicates"] == 0 else 1)


if __name__ == "__main__":
    main()
