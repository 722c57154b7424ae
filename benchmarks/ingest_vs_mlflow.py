"""Tracking side by side: T4DM and a real MLflow tracking server, both up at once, same client code,
same points, phases alternating between the two servers, repeated.

    python -m venv /tmp/mlflow-venv && /tmp/mlflow-venv/bin/pip install 'mlflow==3.17.2' psycopg2-binary
    .venv/bin/python benchmarks/ingest_vs_mlflow.py --mlflow /tmp/mlflow-venv/bin/mlflow [--reps 3]

(The full `mlflow` package, server included, lives in its own virtual environment: the project's
venv has only `mlflow-skinny`, the client.)

- T4DM: the production web tier (tests/platform.py `production_web`: PostgreSQL, Redis channel layer)
  with ONE web process: uvicorn as `make web` runs it (`--server daphne`: the embedded default's server).
- MLflow: `mlflow server --workers 1` (uvicorn) on its own fresh database of the same PostgreSQL server.

Phases (each repetition runs every phase as T4DM, MLflow, T4DM; `--clients` concurrent connections,
each for its own job/run, with fresh jobs/runs every time so that nothing is a duplicate). T4DM's runs
last ~1/15 of MLflow's, and this shared VM's speed drifts within minutes (a fixed CPU loop took
0.93-1.55 s within two minutes): T4DM's figure for a repetition is its two runs together (points over
seconds), which bracket MLflow's run, so that both servers are measured over the same stretch of time.

- `native, N points/request`: T4DM's worker ingest (POST /api/v1/ingest/jobs/<id>/metrics, job
  token) against MLflow's `runs/log-batch` with the same points per request (≤ 1,000, MLflow's limit).
- `native, max batch`: T4DM's largest batch (INGEST_MAX_BATCH, 5,000 points) against MLflow's largest
  (1,000), the same points: each server at its best.
- `native, one step/request`: one training step (`--keys` points) per request, what a live run sends
  between flushes.
- `MLflow API log-batch` / `MLflow API, one step/request`: the same `runs/log-batch` bodies to both
  servers (T4DM's MLflow-compatible API with an API token).

A warm-up round (every phase once on each server, at most `--warmup-steps` steps per client) comes
first and is not counted. Request bodies are serialised before the clock starts. After each phase every point is read back
(T4DM native: the series endpoint, exact when max_points covers the series; MLflow API on both:
`metrics/get-history`) and counted: the benchmark fails unless each was stored exactly once.
Then reads: `runs/get`, `runs/search` and one `get-history` of a `--read-points` run, timed on both.

The clients are threads of this process, each with one keep-alive connection of the standard
library's `http.client` (`--client httpx`: httpx, as earlier runs did). They share the machine's cores
with both servers: httpx spent 3-5 ms of CPU per 80 kB request here, a fifth of the machine while T4DM
answered 1,000-point batches (and under 3 % of it during MLflow's), so a heavy client takes CPU from
the faster server. The table gives the client threads' CPU per 1,000 points for each server.

Besides the rates, the table gives T4DM's web-process CPU per 1,000 points in each phase (psutil, the
one web process and its children) and the rate one web process could answer at that cost
(points / web CPU seconds): the capacity of a web process apart from PostgreSQL and the clients, which
share this machine's cores with it.

The machine is shared: print the load average with the figures, and read ratios, not absolutes.
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

MLFLOW_BATCH = 1000  # MLflow's limit on metrics per log-batch request


def make_points(steps: int, keys: int, seed: int) -> list[tuple[str, int, float, int]]:
    """One run's points: `keys` series stepping together, (key, step, value, timestamp ms)."""
    base = 1_700_000_000_000 + seed * 10_000_000
    return [
        (f"metric_{k}", step, 1.0 / (step + 1) + k + seed * 1e-6, base + step * 10)
        for step in range(steps)
        for k in range(keys)
    ]


def _chunks(points: list, size: int) -> list[list]:
    return [points[i : i + size] for i in range(0, len(points), size)]


def native_body(points) -> bytes:
    return json.dumps(
        {"points": [{"key": k, "step": s, "value": v, "wall_time": t / 1000} for k, s, v, t in points]}
    ).encode()


def mlflow_body(run_id: str, points) -> bytes:
    return json.dumps(
        {
            "run_id": run_id,
            "metrics": [{"key": k, "value": v, "timestamp": t, "step": s} for k, s, v, t in points],
        }
    ).encode()


def _cpu_seconds(pid: int) -> float:
    import psutil

    try:
        root = psutil.Process(pid)
        return sum(p.cpu_times().user + p.cpu_times().system for p in [root, *root.children(recursive=True)])
    except psutil.Error:
        return float("nan")


class _Answer:
    """What a phase's check reads of an answer: the status, the text and the JSON (like httpx's)."""

    def __init__(self, status_code: int, content: bytes) -> None:
        self.status_code, self.content = status_code, content

    @property
    def text(self) -> str:
        return self.content.decode(errors="replace")

    def json(self):
        return json.loads(self.content)


def _post_with_http_client(url: str, headers: dict, bodies: list[bytes], check, barrier, errors) -> None:
    """One keep-alive connection (the standard library's http.client), the bodies posted in order."""
    import http.client
    from urllib.parse import urlsplit

    where = urlsplit(url)
    connection = http.client.HTTPConnection(where.hostname, where.port, timeout=300)
    try:
        connection.request("GET", "/")  # open the connection before the clock
        connection.getresponse().read()
        barrier.wait()
        for body in bodies:
            connection.request("POST", where.path, body=body, headers=headers)
            answer = connection.getresponse()
            problem = check(_Answer(answer.status, answer.read()))
            if problem:
                errors.append(problem)
                return
    finally:
        connection.close()


def _post_with_httpx(url: str, headers: dict, bodies: list[bytes], check, barrier, errors) -> None:
    import httpx

    with httpx.Client(headers=headers, timeout=300) as http:
        http.get(url.split("/api/")[0] + "/")  # open the connection before the clock
        barrier.wait()
        for body in bodies:
            problem = check(http.post(url, content=body))
            if problem:
                errors.append(problem)
                return


CLIENTS = {"http.client": _post_with_http_client, "httpx": _post_with_httpx}
CLIENT = "http.client"  # main() sets it from --client


def blast(urls: list[str], headers: list[dict], bodies: list[list[bytes]], check) -> tuple[float, float]:
    """Each client posts its bodies in order over one keep-alive connection; returns wall seconds and
    the CPU seconds the client threads used meanwhile (this process's, which runs nothing else then)."""
    errors: list = []
    barrier = threading.Barrier(len(bodies) + 1)
    post = CLIENTS[CLIENT]
    threads = [
        threading.Thread(
            target=post,
            args=(
                urls[i],
                {**headers[i], "Content-Type": "application/json"},
                bodies[i],
                check,
                barrier,
                errors,
            ),
        )
        for i in range(len(bodies))
    ]
    for thread in threads:
        thread.start()
    barrier.wait()
    started, cpu = time.perf_counter(), time.process_time()
    for thread in threads:
        thread.join()
    seconds, cpu = time.perf_counter() - started, time.process_time() - cpu
    if errors:
        raise RuntimeError(errors[:3])
    return seconds, cpu


def _ok(response):
    return None if response.status_code == 200 else f"HTTP {response.status_code}: {response.text[:300]}"


def _native_ok(response):
    if response.status_code != 200:
        return f"HTTP {response.status_code}: {response.text[:300]}"
    return f"duplicates where none were sent: {response.text}" if response.json()["duplicates"] else None


class Server:
    """What a phase needs of one server: where to post, and how to count what it stored."""

    def __init__(self, name: str, base: str, token: str | None, pid: int) -> None:
        import httpx

        self.name, self.base, self.pid = name, base, pid
        self.headers = {"Authorization": f"Bearer {token}"} if token else {}
        self.mlflow = base + "/api/2.0/mlflow"
        self.http = httpx.Client(headers=self.headers, timeout=300)
        self.experiment = self.http.post(
            self.mlflow + "/experiments/create", json={"name": f"bench-{secrets.token_hex(3)}"}
        ).json()["experiment_id"]

    def new_runs(self, count: int) -> list[str]:
        return [
            self.http.post(
                self.mlflow + "/runs/create",
                json={"experiment_id": self.experiment, "start_time": int(time.time() * 1000)},
            ).json()["run"]["info"]["run_id"]
            for _ in range(count)
        ]

    def history(self, run_id: str, key: str) -> list[dict]:
        response = self.http.get(
            self.mlflow + "/metrics/get-history", params={"run_id": run_id, "metric_key": key}
        )
        response.raise_for_status()
        return response.json().get("metrics", [])

    def stored_mlflow(self, run_id: str, keys: list[str]) -> list[tuple]:
        return [(m["key"], m["step"], m["value"]) for key in keys for m in self.history(run_id, key)]


def t4dm_native_stored(server: Server, job_id: str, keys: list[str]) -> list[tuple]:
    out = []
    for key in keys:
        body = server.http.get(
            f"{server.base}/api/v1/jobs/{job_id}/metrics", params={"key": key, "max_points": 100_000}
        ).json()
        assert not body["downsampled"], body.get("downsampled")
        out.extend((key, step, value) for step, value, _ in body["series"][key])
    return out


def check_exactly_once(stored: list[tuple], sent: list[tuple], where: str) -> int:
    expected = sorted((k, s, v) for k, s, v, _ in sent)
    if sorted(stored) != expected:
        raise AssertionError(
            f"{where}: stored {len(stored):,} points, sent {len(expected):,} "
            f"({len(set(stored)) - len(stored)} repeated, {len(set(expected) - set(stored))} missing)"
        )
    return len(stored)


def start_mlflow(mlflow: str, data: Path):
    import httpx
    import psycopg

    from tests.platform import PG_URL, free_port

    database = f"mlflow_bench_{secrets.token_hex(4)}"
    with psycopg.connect(PG_URL, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{database}"')
    store = "postgresql+psycopg2://" + PG_URL.split("://", 1)[1].rsplit("/", 1)[0] + "/" + database
    port = free_port()
    log = open(data / "mlflow-server.log", "w")  # noqa: SIM115 - closed in stop_mlflow
    process = subprocess.Popen(
        [mlflow, "server", "--backend-store-uri", store, "--default-artifact-root", str(data / "artifacts"),
         "--host", "127.0.0.1", "--port", str(port), "--workers", "1"],
        stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
        # Tracking only: MLflow's job runner (huey consumers for its GenAI jobs, ~10 % of a core here
        # while idle, taken from both servers' share) stays off.
        env={**os.environ, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"},
    )  # fmt: skip
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 240
    while True:
        if process.poll() is not None:
            raise RuntimeError(f"mlflow server exited: {(data / 'mlflow-server.log').read_text()[-2000:]}")
        try:
            if httpx.get(base + "/health", timeout=2).status_code == 200:
                break
        except httpx.HTTPError:
            pass
        if time.monotonic() > deadline:
            raise TimeoutError("mlflow server did not come up")
        time.sleep(0.5)
    version = subprocess.run([mlflow, "--version"], capture_output=True, text=True).stdout.strip()
    return process, base, database, log, version.replace("mlflow, version ", "MLflow ")


def stop_mlflow(process, database: str, log) -> None:
    import psycopg

    from tests.platform import PG_URL

    os.killpg(process.pid, 15)
    try:
        process.wait(20)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, 9)
    log.close()
    with psycopg.connect(PG_URL, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)')


def run_phase(phase: dict, server: Server, t4dm_jobs: list, clients: int, keys: int, seed: int) -> dict:
    """One phase on one server: fresh runs/jobs, the clock around the posts only, then the count."""
    per_request = phase["per_request"]
    sent = [make_points(phase["steps"], keys, seed + c) for c in range(clients)]
    names = [f"metric_{k}" for k in range(keys)]
    if phase["api"] == "native" and server.name == "T4DM":
        jobs = [t4dm_jobs.pop() for _ in range(clients)]
        urls = [f"{server.base}/api/v1/ingest/jobs/{job_id}/metrics" for job_id, _ in jobs]
        headers = [{"Authorization": f"Bearer {token}"} for _, token in jobs]
        bodies = [[native_body(chunk) for chunk in _chunks(points, per_request)] for points in sent]
        check = _native_ok
    else:
        if server.name == "MLflow":
            per_request = phase.get("per_request_mlflow", per_request)
        runs = server.new_runs(clients)
        urls = [server.mlflow + "/runs/log-batch"] * clients
        headers = [server.headers] * clients
        bodies = [
            [mlflow_body(run, chunk) for chunk in _chunks(points, per_request)]
            for run, points in zip(runs, sent, strict=True)
        ]
        check = _ok
    cpu = _cpu_seconds(server.pid)
    seconds, client_cpu = blast(urls, headers, bodies, check)
    cpu = _cpu_seconds(server.pid) - cpu
    stored = 0
    for c in range(clients):
        if phase["api"] == "native" and server.name == "T4DM":
            found = t4dm_native_stored(server, jobs[c][0], names)
        else:
            found = server.stored_mlflow(runs[c], names)
        stored += check_exactly_once(found, sent[c], f"{server.name} {phase['name']} client {c}")
    points = sum(len(p) for p in sent)
    return {"seconds": seconds, "points": points, "stored": stored, "rate": points / seconds,
            "requests": sum(len(b) for b in bodies), "cpu": cpu, "client_cpu": client_cpu}  # fmt: skip


def _together(a: dict, b: dict) -> dict:
    """Two runs of one phase on one server as one: their points over their seconds."""
    out = {k: a[k] + b[k] for k in ("seconds", "points", "stored", "requests", "cpu", "client_cpu")}
    return {**out, "rate": out["points"] / out["seconds"]}


def time_reads(server: Server, run_id: str, key: str, reps: int) -> dict:
    out = {}
    calls = {
        "runs/get": lambda: server.http.get(server.mlflow + "/runs/get", params={"run_id": run_id}),
        "runs/search": lambda: server.http.post(
            server.mlflow + "/runs/search", json={"experiment_ids": [server.experiment], "max_results": 1000}
        ),
        "get-history": lambda: server.http.get(
            server.mlflow + "/metrics/get-history", params={"run_id": run_id, "metric_key": key}
        ),
    }
    for name, call in calls.items():
        call().raise_for_status()  # warm
        times = []
        for _ in range(reps):
            started = time.perf_counter()
            call().raise_for_status()
            times.append(time.perf_counter() - started)
        out[name] = statistics.median(times)
    return out


def _spread(values: list[float]) -> str:
    return f"{statistics.median(values):,.0f} ({min(values):,.0f}–{max(values):,.0f})"


def main() -> None:
    global CLIENT
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--mlflow", default=os.environ.get("MLFLOW_SERVER_BIN", "/tmp/mlflow-venv/bin/mlflow"),
                        help="the `mlflow` command of a full MLflow install (server included)")  # fmt: skip
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument(
        "--client", choices=sorted(CLIENTS), default=CLIENT,
        help="the HTTP client of the posting threads (the same for both servers)",
    )  # fmt: skip
    parser.add_argument("--clients", type=int, default=4)
    parser.add_argument("--keys", type=int, default=2, help="series per run: the points of one step")
    parser.add_argument("--batch-steps", type=int, default=5_000, help="steps per client in batch phases")
    parser.add_argument("--step-requests", type=int, default=100, help="requests per client, one-step phases")
    parser.add_argument("--warmup-steps", type=int, default=500, help="steps per client, warm-up round")
    parser.add_argument("--read-points", type=int, default=20_000, help="points of the run the reads use")
    parser.add_argument(
        "--server", choices=["uvicorn", "daphne"], default="uvicorn", help="T4DM's ASGI server"
    )
    parser.add_argument("--max-batch", type=int, default=5_000,
                        help="T4DM's points per request in the max-batch phase (its INGEST_MAX_BATCH); 0 skips it")  # fmt: skip
    args = parser.parse_args()
    if not Path(args.mlflow).exists() and not shutil.which(args.mlflow):
        sys.exit(
            f"no MLflow server command at {args.mlflow}: install the full mlflow package (see the docstring)"
        )
    CLIENT = args.client
    import logging

    logging.getLogger("httpx").setLevel(logging.WARNING)
    from tests.platform import production_web, running_jobs, stop_production_web

    batch = min(MLFLOW_BATCH, 1000) // args.keys * args.keys
    largest = args.max_batch // args.keys * args.keys
    phases = [
        {"name": f"native, {batch:,} points/request", "api": "native", "per_request": batch,
         "steps": args.batch_steps},
        {"name": f"native, max batch (T4DM {largest:,}, MLflow {batch:,})", "api": "native",
         "per_request": largest, "per_request_mlflow": batch, "steps": args.batch_steps},
        {"name": f"native, one step ({args.keys} points)/request", "api": "native", "per_request": args.keys,
         "steps": args.step_requests},
        {"name": f"MLflow API log-batch, {batch:,}/request", "api": "mlflow", "per_request": batch,
         "steps": args.batch_steps},
        {"name": "MLflow API, one step/request", "api": "mlflow", "per_request": args.keys,
         "steps": args.step_requests},
    ]  # fmt: skip
    if not args.max_batch:
        phases = [p for p in phases if "per_request_mlflow" not in p]
    data = Path(tempfile.mkdtemp(prefix="t4dm-tracking-bench-"))
    (data / "t4dm").mkdir()
    results: dict[str, dict[str, list[dict]]] = {p["name"]: {"T4DM": [], "MLflow": []} for p in phases}
    platform = mlflow_process = None
    try:
        platform = production_web(data / "t4dm", asgi_processes=1, server=args.server)
        mlflow_process, mlflow_base, mlflow_db, mlflow_log, version = start_mlflow(args.mlflow, data)
        native_phases = sum(p["api"] == "native" for p in phases)
        t4dm_jobs = list(running_jobs(platform, (2 * args.reps + 1) * native_phases * args.clients))
        servers = {
            "T4DM": Server("T4DM", platform.base_url, platform.token, platform.processes[0].pid),
            "MLflow": Server("MLflow", mlflow_base, None, mlflow_process.pid),
        }
        print(f"T4DM ({args.server}, 1 process, PostgreSQL) vs {version} (uvicorn --workers 1, PostgreSQL); "
              f"{args.clients} clients ({args.client}), {args.keys} series per run, {args.reps} repetitions",
              flush=True)  # fmt: skip
        seed = 0
        # Warm-up, not counted: every phase once on each server with at most --warmup-steps steps per
        # client (each server's first requests pay for lazy imports, new connections, prepared plans).
        for phase in phases:
            for name in ("T4DM", "MLflow"):
                seed += args.clients
                short = {**phase, "steps": min(phase["steps"], args.warmup_steps)}
                run_phase(short, servers[name], t4dm_jobs, args.clients, args.keys, seed * 1000)
        for rep in range(args.reps):
            for phase in phases:
                runs = []
                for name in ("T4DM", "MLflow", "T4DM"):
                    seed += args.clients
                    r = run_phase(phase, servers[name], t4dm_jobs, args.clients, args.keys, seed * 1000)
                    runs.append(r)
                    print(f"  rep {rep + 1} {phase['name']:<40} {name:<6} {r['points']:>8,} points "
                          f"{r['requests']:>6,} requests {r['seconds']:7.2f} s {r['rate']:>10,.0f} points/s "
                          f"stored exactly once: {r['stored']:,}", flush=True)  # fmt: skip
                results[phase["name"]]["T4DM"].append(_together(runs[0], runs[2]))
                results[phase["name"]]["MLflow"].append(runs[1])
        # Reads: one run of --read-points points on each server (log-batch, the same bodies).
        reads = {}
        steps = args.read_points // args.keys
        for name, server in servers.items():
            [run] = server.new_runs(1)
            points = make_points(steps, args.keys, 999)
            blast([server.mlflow + "/runs/log-batch"], [server.headers],
                  [[mlflow_body(run, c) for c in _chunks(points, batch)]], _ok)  # fmt: skip
            reads[name] = time_reads(server, run, "metric_0", reps=max(3, args.reps))
            count = len(server.history(run, "metric_0"))
            assert count == steps, (name, count, steps)
    finally:
        if mlflow_process is not None:
            stop_mlflow(mlflow_process, mlflow_db, mlflow_log)
        if platform is not None:
            stop_production_web(platform)
        shutil.rmtree(data, ignore_errors=True)

    print()
    header = ("phase", "T4DM points/s", "MLflow points/s", "ratio T4DM/MLflow",
              "T4DM web CPU ms/1,000 points", "points/s per T4DM web CPU-second",
              "client CPU ms/1,000 points (T4DM / MLflow)")  # fmt: skip
    rows = []
    for phase in phases:
        t4dm = [r["rate"] for r in results[phase["name"]]["T4DM"]]
        mlflow = [r["rate"] for r in results[phase["name"]]["MLflow"]]
        ratios = [a / b for a, b in zip(t4dm, mlflow, strict=True)]
        per_point = [r["cpu"] / r["points"] for r in results[phase["name"]]["T4DM"]]
        rows.append((phase["name"], _spread(t4dm), _spread(mlflow),
                     f"{statistics.median(ratios):.1f}x ({min(ratios):.1f}–{max(ratios):.1f})",
                     f"{statistics.median(per_point) * 1e6:.2f} ({min(per_point) * 1e6:.2f}–{max(per_point) * 1e6:.2f})",
                     _spread([1 / c for c in per_point]),
                     " / ".join(f"{statistics.median(r['client_cpu'] / r['points'] for r in results[phase['name']][name]) * 1e6:.2f}"
                                for name in ("T4DM", "MLflow"))))  # fmt: skip
    for name in ("runs/get", "runs/search", "get-history"):
        a, b = reads["T4DM"][name], reads["MLflow"][name]
        label = {
            "runs/get": f"runs/get ({args.read_points:,}-point run)",
            "runs/search": "runs/search (the experiment's runs)",
            "get-history": f"get-history, all {args.read_points // args.keys:,} points of one series",
        }[name]
        verdict = f"{b / a:.1f}x faster" if a < b else f"{a / b:.1f}x slower"
        rows.append((label, f"{a * 1000:.1f} ms", f"{b * 1000:.1f} ms", verdict, "", "", ""))
    width = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(header)]
    print("  ".join(h.ljust(w) for h, w in zip(header, width, strict=True)))
    print("  ".join("-" * w for w in width))
    for row in rows:
        print("  ".join(c.ljust(w) for c, w in zip(row, width, strict=True)))
    load = os.getloadavg()
    print(
        f"\nmedian (min–max) over {args.reps} repetitions; every point of every phase counted stored exactly once"
    )
    print(
        f"machine: {os.cpu_count()} CPUs, load average {load[0]:.1f} / {load[1]:.1f} / {load[2]:.1f} (1/5/15 min)"
    )


if __name__ == "__main__":
    main()
