"""Dashboard benchmark: a million-point series, the chart API, the chart in Chromium, live latency.

    .venv/bin/python benchmarks/dashboard_series.py [--points 1000000] [--viewers 100] [--live-points 1000]

Everything runs against a throwaway SQLite database under a temporary T4DM_DATA_DIR and a real
daphne server on a free loopback port:

1. two jobs with N points in one series ("loss"), inserted through the ingest service (plus short
   learning_rate / val_loss series, as a real job has);
2. the chart API (GET /api/v1/jobs/<id>/metrics?key=loss&...): the first load (cold: it builds the
   series summary), warm full-range loads, and zooms into random ranges; target < 150 ms;
3. Chromium: from navigation to the loss chart drawn (window.t4dmFirstDraw, set by job_live.js once
   plotly has drawn), cold and warm; target < 1 s;
4. live latency: V websocket viewers on one job; a reporter flushes L points (10 per flush, through
   the same HTTP client the worker's reporter uses); latency = viewer receipt - flush start, p50/p95
   over every (viewer, point); target p95 < 100 ms.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import multiprocessing
import os
import random
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
PASSWORD = "bench-password"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, math.ceil(q / 100 * len(ordered)) - 1))]


def _setup(points: int) -> dict:
    import django

    django.setup()
    from django.conf import settings
    from django.contrib.auth import get_user_model
    from django.core.management import call_command

    from datasets_app.models import Dataset, DatasetVersion
    from experiments.ingest import PointIn, metric_points_ingest
    from experiments.models import Experiment, TrainingConfig, TrainingJob
    from t4dm_site.services import api_token_create, role_assign

    call_command("migrate", verbosity=0)
    user = get_user_model().objects.create_user("bench", password=PASSWORD)
    role_assign(user=user, role="researcher")
    _, token = api_token_create(user=user)
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
    jobs = {}
    inserted = {}
    for name in ("api", "browser"):
        job = TrainingJob.objects.create(
            owner=user,
            config=config,
            experiment=experiment,
            status="succeeded",
            step=points,
            total_steps=points,
        )
        rng = random.Random(name)
        started = time.perf_counter()
        # Through the ingest service in its largest batches: the real write path, which also keeps
        # the series' rollups that the chart's first load reads.
        points_in = [
            PointIn(
                "loss",
                s,
                2.5 * math.exp(-s / (points / 4)) + 0.3 + rng.random() * 0.05,
                wall_time=1.7e9 + s * 0.05,
            )
            for s in range(points)
        ]
        points_in += [
            PointIn("learning_rate", s, 1e-4, wall_time=1.7e9 + s * 0.05) for s in range(0, points, 1000)
        ]
        points_in += [PointIn("val_loss", s, 0.4, wall_time=1.7e9 + s * 0.05) for s in range(0, points, 5000)]
        for begin in range(0, len(points_in), settings.INGEST_MAX_BATCH):
            metric_points_ingest(job=job, points=points_in[begin : begin + settings.INGEST_MAX_BATCH])
        inserted[name] = time.perf_counter() - started
        jobs[name] = job.public_id
    live = TrainingJob.objects.create(owner=user, config=config, experiment=experiment)
    live_token = live.issue_token()
    live.mark_queued()
    live.mark_running(worker="bench")
    return {
        "token": token,
        "jobs": jobs,
        "live": live.public_id,
        "live_token": live_token,
        "inserted": inserted,
    }


def _api(base: str, token: str, job_id: str, points: int) -> dict:
    import httpx

    http = httpx.Client(base_url=base + "/api/v1", headers={"Authorization": f"Bearer {token}"}, timeout=60)

    def timed(**params) -> tuple[float, int]:
        started = time.perf_counter()
        response = http.get(f"/jobs/{job_id}/metrics", params=params)
        elapsed = (time.perf_counter() - started) * 1000
        assert response.status_code == 200, response.text
        return elapsed, sum(len(v) for v in response.json()["series"].values())

    cold, cold_points = timed(key="loss", max_points=2000)
    warm = [timed(key="loss", max_points=2000) for _ in range(30)]
    rng = random.Random(7)
    zooms = []
    for _ in range(40):
        width = max(10, int(points * rng.choice([0.0005, 0.005, 0.05, 0.3])))
        start = rng.randrange(0, points - width)
        zooms.append(timed(key="loss", start=start, end=start + width, max_points=2000))
    snapshot = [timed(max_points=2000) for _ in range(10)]
    http.close()
    return {
        "cold": (cold, cold_points),
        "warm": warm,
        "zoom": zooms,
        "snapshot": snapshot,
    }


def _browser(base: str, job_ids: dict, points: int) -> dict:
    from playwright.sync_api import sync_playwright

    results = {}
    with sync_playwright() as p:
        browser = p.chromium.launch(
            executable_path="/usr/bin/chromium",
            args=[
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-background-networking",
                "--no-first-run",
            ],
        )
        page = browser.new_page(viewport={"width": 1366, "height": 900})
        page.goto(base + "/login/")
        page.fill("input[name=username]", "bench")
        page.fill("input[name=password]", PASSWORD)
        page.click("button[type=submit]")
        page.wait_for_url(base + "/")

        def draw(job_id: str) -> tuple[float, int]:
            page.goto(f"{base}/jobs/{job_id}/")
            page.wait_for_function("window.t4dmFirstDraw !== undefined", timeout=60_000)
            return page.evaluate("window.t4dmFirstDraw"), int(
                page.get_attribute("#chart-loss", "data-points")
            )

        # First page load: the browser has not cached plotly.min.js (4.8 MB) yet; the server's summary
        # of this job is warm (the API part read it).
        results["browser_cold"] = draw(job_ids["api"])
        # First view of the other job since the server started: the server builds its summary.
        results["server_cold"] = draw(job_ids["browser"])
        results["warm"] = [draw(job_ids["browser"]) for _ in range(5)]
        shots = Path(os.environ.get("T4DM_SCREENSHOTS_DIR") or ROOT / "test-results")
        shots.mkdir(exist_ok=True)
        page.screenshot(path=str(shots / "bench_million_points.png"), full_page=True)
        # Zoom: drag-select is what a person does; relayout is what plotly emits for it.
        page.evaluate(
            "([a, b]) => Plotly.relayout(document.getElementById('chart-loss'), {'xaxis.range[0]': a, 'xaxis.range[1]': b})",
            [int(points * 0.4), int(points * 0.402)],
        )
        page.wait_for_function(
            "document.getElementById('zoom-state').textContent.startsWith('zoomed')", timeout=30_000
        )
        results["zoom_text"] = page.text_content("#zoom-state")
        page.wait_for_timeout(400)
        page.screenshot(path=str(shots / "bench_million_points_zoomed.png"), full_page=True)
        browser.close()
    return results


def _viewers(ws_url: str, token: str, origin: str, count: int, expected: int, ready, out) -> None:
    from websockets.asyncio.client import connect

    async def one(index: int, received: list) -> None:
        async with connect(
            ws_url, additional_headers={"Authorization": f"Bearer {token}"}, origin=origin, max_size=2**24
        ) as ws:
            json.loads(await ws.recv())  # snapshot
            ready.put(index)
            seen = 0
            while seen < expected:
                message = json.loads(await asyncio.wait_for(ws.recv(), timeout=60))
                now = time.time()
                if message["type"] == "points":
                    for point in message["points"]:
                        received.append((point["step"], now))
                        seen += 1

    async def main() -> list:
        received: list = []
        await asyncio.gather(*(one(i, received) for i in range(count)), return_exceptions=False)
        return received

    out.put(asyncio.run(main()))


def _live(base: str, job_id: str, job_token: str, user_token: str, viewers: int, points: int) -> dict:
    from experiments.training.http_reporter import PlatformClient

    ctx = multiprocessing.get_context("spawn")
    ready, out = ctx.Queue(), ctx.Queue()
    processes = 2
    ws_url = base.replace("http://", "ws://") + f"/ws/jobs/{job_id}/?after=0"
    procs = [
        ctx.Process(
            target=_viewers,
            args=(ws_url, user_token, base, viewers // processes, points, ready, out),
            daemon=True,
        )
        for _ in range(processes)
    ]
    for proc in procs:
        proc.start()
    for _ in range(viewers // processes * processes):
        ready.get(timeout=120)
    client = PlatformClient(base, job_id, job_token)
    flushed: dict[int, float] = {}
    per_flush = 10
    for first in range(0, points, per_flush):
        batch = [
            {"key": "loss", "step": s, "value": 1.0 / (s + 1), "wall_time": time.time()}
            for s in range(first, first + per_flush)
        ]
        started = time.time()
        for point in batch:
            flushed[point["step"]] = started
        client.metrics(batch)
        time.sleep(0.05)
    client.close()
    latencies = []
    for _ in procs:
        for step, at in out.get(timeout=180):
            latencies.append((at - flushed[step]) * 1000)
    for proc in procs:
        proc.join(10)
    return {"latencies": latencies, "viewers": viewers // processes * processes}


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--points", type=int, default=1_000_000)
    parser.add_argument("--viewers", type=int, default=100)
    parser.add_argument("--live-points", type=int, default=1000)
    parser.add_argument("--skip-browser", action="store_true")
    args = parser.parse_args()
    import logging

    logging.getLogger("httpx").setLevel(logging.WARNING)

    data = Path(tempfile.mkdtemp(prefix="t4dm-bench-"))
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("T4DM_", "DJANGO_", "DATABASE_URL", "CHANNEL_"))
    }
    env.update({"T4DM_DATA_DIR": str(data), "DJANGO_SETTINGS_MODULE": "t4dm_site.settings"})
    os.environ.update(env)
    print(f"data dir {data}; setting up {args.points:,} points x 2 jobs …", flush=True)
    setup = _setup(args.points)
    port = _free_port()
    base = f"http://127.0.0.1:{port}"
    env["T4DM_SERVER_URL"] = base
    server = subprocess.Popen(
        [sys.executable, "-m", "daphne", "-b", "127.0.0.1", "-p", str(port), "t4dm_site.asgi:application"],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=open(data / "daphne.log", "w"),  # noqa: SIM115 - lives as long as the server
    )
    try:
        import httpx

        for _ in range(300):
            try:
                if httpx.get(base + "/login/", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.1)
        api = _api(base, setup["token"], setup["jobs"]["api"], args.points)
        browser = None if args.skip_browser else _browser(base, setup["jobs"], args.points)
        live = _live(base, setup["live"], setup["live_token"], setup["token"], args.viewers, args.live_points)
    finally:
        server.terminate()
        server.wait(20)

    rows = []
    rows.append(
        (
            "insert (ingest service, 5,000/batch)",
            f"{args.points:,} points",
            f"{setup['inserted']['api']:.1f} s",
            "—",
        )
    )
    cold_ms, cold_points = api["cold"]
    rows.append(
        ("chart API, first load (builds summary)", f"{cold_points} pts", f"{cold_ms:.0f} ms", "< 150 ms")
    )
    warm = [t for t, _ in api["warm"]]
    rows.append(
        (
            "chart API, full range, warm",
            f"{api['warm'][0][1]} pts",
            f"p50 {_pct(warm, 50):.1f} / p95 {_pct(warm, 95):.1f} ms",
            "< 150 ms",
        )
    )
    zoom = [t for t, _ in api["zoom"]]
    zoom_pts = [n for _, n in api["zoom"]]
    rows.append(
        (
            "chart API, zoom (random ranges)",
            f"{min(zoom_pts)}–{max(zoom_pts)} pts",
            f"p50 {_pct(zoom, 50):.1f} / p95 {_pct(zoom, 95):.1f} ms",
            "< 150 ms",
        )
    )
    snap = [t for t, _ in api["snapshot"]]
    rows.append(
        (
            "all series (websocket snapshot path)",
            f"{api['snapshot'][0][1]} pts",
            f"p50 {_pct(snap, 50):.1f} / p95 {_pct(snap, 95):.1f} ms",
            "—",
        )
    )
    if browser:
        rows.append(
            (
                "Chromium: first page load (no plotly.js cached)",
                f"{browser['browser_cold'][1]} pts",
                f"{browser['browser_cold'][0]:.0f} ms",
                "< 1000 ms",
            )
        )
        rows.append(
            (
                "Chromium: first view since server start",
                f"{browser['server_cold'][1]} pts",
                f"{browser['server_cold'][0]:.0f} ms",
                "< 1000 ms",
            )
        )
        warm_draw = [t for t, _ in browser["warm"]]
        rows.append(
            (
                "Chromium: navigation → chart drawn, repeat",
                f"{browser['warm'][0][1]} pts",
                f"p50 {_pct(warm_draw, 50):.0f} / max {max(warm_draw):.0f} ms",
                "< 1000 ms",
            )
        )
        rows.append(("Chromium: zoom into 0.2 % of the steps", browser["zoom_text"], "", ""))
    lat = live["latencies"]
    rows.append(
        (
            f"live: flush → viewer receipt ({live['viewers']} viewers)",
            f"{len(lat):,} receipts",
            f"p50 {_pct(lat, 50):.1f} / p95 {_pct(lat, 95):.1f} / max {max(lat):.1f} ms",
            "p95 < 100 ms",
        )
    )
    width = [max(len(str(r[i])) for r in rows) for i in range(4)]
    header = ("measurement", "size", "result", "target")
    width = [max(w, len(h)) for w, h in zip(width, header, strict=True)]
    print()
    print("  ".join(h.ljust(w) for h, w in zip(header, width, strict=True)))
    print("  ".join("-" * w for w in width))
    for row in rows:
        print("  ".join(str(c).ljust(w) for c, w in zip(row, width, strict=True)))
    print(f"\nmachine: {os.cpu_count()} CPUs; SQLite at {data}")
    shutil.rmtree(data, ignore_errors=True)


if __name__ == "__main__":
    main()
