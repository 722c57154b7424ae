"""Ingest throughput: T4DM's worker ingest endpoint against a real MLflow tracking server, same points.

    .venv/bin/pip install mlflow          # the full server; only this benchmark needs it
    .venv/bin/python benchmarks/ingest_vs_mlflow.py [--points 400000] [--clients 4] [--keys 8]

Both servers run on this machine, one after the other, each as ONE server process on its own fresh
PostgreSQL database (the machine's server, T4DM_TEST_POSTGRES_URL; `--mlflow-backend sqlite` gives
MLflow a SQLite file instead):

- T4DM: the production web tier (tests/platform.py `production_web`: PostgreSQL, Redis channel layer)
  with one daphne process; `--clients` load generators, each reporting for its own running job with
  that job's token, exactly as a worker does (POST /api/v1/ingest/jobs/<id>/metrics), in batches of
  the largest size T4DM accepts (T4DM_INGEST_MAX_BATCH, 5,000 by default).
- MLflow: `mlflow server --workers 1` (uvicorn); the same clients log the same points to one run each
  with POST /api/2.0/mlflow/runs/log-batch, 1,000 metrics per request (MLflow's limit). MLflow stores a
  few hundred points/s, so by default it gets the first 40,000 of them (the first steps of every
  series; `--mlflow-points 0` sends it all of them): rates are per point, so this changes only the
  time the run takes.

Request bodies are serialised before the clock starts, so the figures are the servers' (plus the
loopback HTTP); the clients still share the machine's cores with the server. Every point is then
counted in each server's store. Targets: T4DM ≥ 10× MLflow and ≥ 100,000 points/s per server process.
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

MLFLOW_BATCH = 1000  # MLflow's limit on metrics per log-batch request


def make_points(clients: int, total: int, keys: int) -> list[list[tuple[str, int, float, float]]]:
    """Per client: `total / clients` points, `keys` series stepping together, like a training run."""
    per_client = total // clients
    steps = per_client // keys
    base = 1.7e9
    out = []
    for c in range(clients):
        points = []
        for step in range(steps):
            for k in range(keys):
                points.append((f"metric_{k}", step, 1.0 / (step + 1) + k + c * 0.001, base + step * 0.01))
        out.append(points)
    return out


def _cpu_seconds(pid: int) -> float:
    import psutil

    try:
        root = psutil.Process(pid)
        total = 0.0
        for proc in [root, *root.children(recursive=True)]:
            times = proc.cpu_times()
            total += times.user + times.system
        return total
    except psutil.Error:
        return float("nan")


def _blast(
    url_for: list[str], headers_for: list[dict], bodies_for: list[list[bytes]], check
) -> tuple[float, list]:
    """Each client posts its bodies in order over one keep-alive connection; returns wall seconds."""
    import httpx

    errors: list = []
    barrier = threading.Barrier(len(bodies_for) + 1)

    def client(index: int) -> None:
        with httpx.Client(
            headers={**headers_for[index], "Content-Type": "application/json"}, timeout=120
        ) as http:
            http.get(url_for[index].split("/api/")[0] + "/login/")  # open the connection before the clock
            barrier.wait()
            for body in bodies_for[index]:
                response = http.post(url_for[index], content=body)
                problem = check(response)
                if problem:
                    errors.append(problem)
                    return

    threads = [threading.Thread(target=client, args=(i,)) for i in range(len(bodies_for))]
    for thread in threads:
        thread.start()
    barrier.wait()
    started = time.perf_counter()
    for thread in threads:
        thread.join()
    return time.perf_counter() - started, errors


def _shell(platform, code: str) -> str:
    """The last line `manage.py shell -c code` prints (it may announce its auto-imports first)."""
    return platform.manage("shell", "-c", code).strip().splitlines()[-1]


def run_t4dm(points_for: list[list], data: Path) -> dict:
    from tests.platform import production_web, running_jobs, stop_production_web

    (data / "t4dm").mkdir()
    platform = production_web(data / "t4dm", asgi_processes=1)
    try:
        batch = int(_shell(platform, "from django.conf import settings; print(settings.INGEST_MAX_BATCH)"))
        jobs = running_jobs(platform, len(points_for))
        urls, headers, bodies = [], [], []
        for (job_id, token), points in zip(jobs, points_for, strict=True):
            urls.append(f"{platform.base_url}/api/v1/ingest/jobs/{job_id}/metrics")
            headers.append({"Authorization": f"Bearer {token}"})
            bodies.append(
                [
                    json.dumps(
                        {
                            "points": [
                                {"key": k, "step": s, "value": v, "wall_time": t}
                                for k, s, v, t in points[i : i + batch]
                            ]
                        }
                    ).encode()
                    for i in range(0, len(points), batch)
                ]
            )

        def check(response):
            if response.status_code != 200:
                return f"HTTP {response.status_code}: {response.text[:300]}"
            if response.json()["duplicates"]:
                return f"unexpected duplicates: {response.text}"
            return None

        server = platform.processes[0].pid
        cpu_before = _cpu_seconds(server)
        seconds, errors = _blast(urls, headers, bodies, check)
        cpu = _cpu_seconds(server) - cpu_before
        assert not errors, errors[:3]
        stored = int(
            _shell(platform, "from experiments.models import MetricPoint; print(MetricPoint.objects.count())")
        )
        # A retried batch (the reporter's recovery path) stores nothing twice: resend one, same server.
        import httpx

        replay = httpx.post(
            urls[0],
            content=bodies[0][0],
            headers={**headers[0], "Content-Type": "application/json"},
            timeout=60,
        ).json()
        return {
            "batch": batch,
            "seconds": seconds,
            "stored": stored,
            "cpu": cpu,
            "replay": replay,
            "backend": "PostgreSQL",
            "requests": sum(len(b) for b in bodies),
            "points": sum(len(p) for p in points_for),
        }
    finally:
        stop_production_web(platform)


def run_mlflow(points_for: list[list], data: Path, backend: str) -> dict:
    import httpx
    import psycopg

    from tests.platform import PG_URL, free_port

    database = None
    if backend == "postgresql":
        database = f"mlflow_bench_{secrets.token_hex(4)}"
        with psycopg.connect(PG_URL, autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{database}"')
        store = "postgresql+psycopg://" + PG_URL.split("://", 1)[1].rsplit("/", 1)[0] + "/" + database
    else:
        store = f"sqlite:///{data / 'mlflow.db'}"
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    mlflow = shutil.which("mlflow", path=str(Path(sys.executable).parent)) or "mlflow"
    log = open(data / "mlflow-server.log", "w")  # noqa: SIM115 - closed below
    server = subprocess.Popen(
        [
            mlflow,
            "server",
            "--backend-store-uri",
            store,
            "--default-artifact-root",
            str(data / "mlflow-artifacts"),
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--workers",
            "1",
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 180
        while True:
            if server.poll() is not None:
                raise RuntimeError(f"mlflow server exited; see {data / 'mlflow-server.log'}")
            try:
                if httpx.get(base + "/health", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                raise TimeoutError("mlflow server did not come up")
            time.sleep(0.5)
        api = base + "/api/2.0/mlflow"
        http = httpx.Client(timeout=120)
        experiment = http.post(api + "/experiments/create", json={"name": "bench"}).json()["experiment_id"]
        runs = [
            http.post(
                api + "/runs/create",
                json={"experiment_id": experiment, "start_time": int(time.time() * 1000)},
            ).json()["run"]["info"]["run_id"]
            for _ in points_for
        ]
        bodies = [
            [
                json.dumps(
                    {
                        "run_id": run,
                        "metrics": [
                            {"key": k, "value": v, "timestamp": int(t * 1000), "step": s}
                            for k, s, v, t in points[i : i + MLFLOW_BATCH]
                        ],
                    }
                ).encode()
                for i in range(0, len(points), MLFLOW_BATCH)
            ]
            for run, points in zip(runs, points_for, strict=True)
        ]

        def check(response):
            return (
                None if response.status_code == 200 else f"HTTP {response.status_code}: {response.text[:300]}"
            )

        cpu_before = _cpu_seconds(server.pid)
        seconds, errors = _blast([api + "/runs/log-batch"] * len(runs), [{}] * len(runs), bodies, check)
        cpu = _cpu_seconds(server.pid) - cpu_before
        assert not errors, errors[:3]
        stored = 0
        for run in runs:
            for key in sorted({k for k, *_ in points_for[0]}):
                history = http.get(
                    api + "/metrics/get-history",
                    params={"run_id": run, "metric_key": key, "max_results": 10**6},
                ).json()
                stored += len(history.get("metrics", []))
        try:
            version = subprocess.run(
                [mlflow, "--version"], capture_output=True, text=True, timeout=60
            ).stdout.strip()
        except (OSError, subprocess.SubprocessError):
            version = "mlflow"
        return {
            "batch": MLFLOW_BATCH,
            "seconds": seconds,
            "stored": stored,
            "cpu": cpu,
            "backend": "PostgreSQL" if database else "SQLite",
            "version": version.replace("mlflow, version ", "MLflow "),
            "requests": sum(len(b) for b in bodies),
            "points": sum(len(p) for p in points_for),
        }
    finally:
        os.killpg(server.pid, 15)
        try:
            server.wait(20)
        except subprocess.TimeoutExpired:
            os.killpg(server.pid, 9)
        log.close()
        if "http" in locals():
            http.close()
        if database:
            with psycopg.connect(PG_URL, autocommit=True) as conn:
                conn.execute(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)')


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--points", type=int, default=400_000, help="points per system (same for both)")
    parser.add_argument(
        "--mlflow-points",
        type=int,
        default=40_000,
        help="MLflow gets the first steps of the same series, this many points (0: all of them)",
    )
    parser.add_argument("--clients", type=int, default=4, help="concurrent client connections")
    parser.add_argument("--keys", type=int, default=8, help="metric series per job/run")
    parser.add_argument("--mlflow-backend", choices=["postgresql", "sqlite"], default="postgresql")
    parser.add_argument("--skip-mlflow", action="store_true")
    args = parser.parse_args()
    import logging

    logging.getLogger("httpx").setLevel(logging.WARNING)
    data = Path(tempfile.mkdtemp(prefix="t4dm-ingest-bench-"))
    points_for = make_points(args.clients, args.points, args.keys)
    total = sum(len(p) for p in points_for)
    print(
        f"{total:,} points = {args.clients} clients x {args.keys} series x {total // args.clients // args.keys:,} steps"
    )
    results = {}
    try:
        print("T4DM …", flush=True)
        results["T4DM"] = run_t4dm(points_for, data)
        if not args.skip_mlflow:
            mlflow_points = points_for
            if args.mlflow_points and args.mlflow_points < total:
                per_client = args.mlflow_points // args.clients // args.keys * args.keys
                mlflow_points = [points[:per_client] for points in points_for]  # the same points, fewer
            print("MLflow …", flush=True)
            results["MLflow"] = run_mlflow(mlflow_points, data, args.mlflow_backend)
    finally:
        shutil.rmtree(data, ignore_errors=True)

    rows = []
    for name, r in results.items():
        r["rate"] = r["points"] / r["seconds"]
        label = "T4DM (daphne, 1 process)" if name == "T4DM" else f"{r['version']} (uvicorn, --workers 1)"
        rows.append(
            (
                label,
                r["backend"],
                f"{r['batch']:,}",
                f"{r['requests']:,}",
                f"{r['points']:,}",
                f"{r['stored']:,}",
                f"{r['seconds']:.2f} s",
                f"{r['rate']:,.0f}",
                f"{r['cpu']:.1f} s",
                f"{r['points'] / r['cpu']:,.0f}",
            )
        )
    header = (
        "server",
        "store",
        "batch",
        "requests",
        "points",
        "stored",
        "time",
        "points/s",
        "server CPU",
        "points/CPU-s",
    )
    width = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(header)]
    print()
    print("  ".join(h.ljust(w) for h, w in zip(header, width, strict=True)))
    print("  ".join("-" * w for w in width))
    for row in rows:
        print("  ".join(c.ljust(w) for c, w in zip(row, width, strict=True)))
    t4dm = results["T4DM"]
    load = os.getloadavg()
    print(f"\nT4DM replayed one batch: {t4dm['replay']} (idempotent)")
    print(f"T4DM: {t4dm['rate']:,.0f} points/s per server process (target ≥ 100,000)")
    if "MLflow" in results:
        ratio = t4dm["rate"] / results["MLflow"]["rate"]
        print(f"ratio T4DM / MLflow: {ratio:.1f}x (target ≥ 10x)")
    print(
        f"clients: {args.clients} concurrent connections; machine: {os.cpu_count()} CPUs, "
        f"load average {load[0]:.1f} / {load[1]:.1f} (1 / 5 min)"
    )


if __name__ == "__main__":
    main()
