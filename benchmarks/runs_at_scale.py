"""Runs table at scale: 10,000 runs in 50 experiments on PostgreSQL, server time of the dashboard reads.

    .venv/bin/python benchmarks/runs_at_scale.py [--runs 10000] [--experiments 50] [--reps 7] [--keep]

1. Creates a fresh PostgreSQL database (PG_URL, default postgres://root@127.0.0.1:5432/postgres),
   migrates it, and seeds it through the services: `experiment_create`, `training_config_create`
   (4 configs per experiment, differing in learning rate and LoRA rank), `job_start`, `job_transition`
   to running and then succeeded / failed / cancelled, and `metric_points_ingest` (loss, val_loss,
   learning_rate at 5 steps: it keeps latest_metrics and the per-series rollups). The one dataset and
   its version are rows made directly (no file to prepare), as the other benchmarks do.
2. Times, in process with Django's test Client (server time: URL routing, views, queries, templates;
   no network), each read `--reps` times after one warm-up, and counts its queries:
   the runs page `/experiments/` (first page, a sort, filters), `GET /api/v1/runs` (same),
   the overview `/`, and compare of 10 runs (page and API).
Prints a table (median, min-max, queries) and drops the database unless --keep.
Targets (issue 19): runs page and sort/filter < 300 ms, overview < 300 ms, compare of 10 < 500 ms.
"""

from __future__ import annotations

import argparse
import os
import secrets
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
PG_URL = os.environ.get("PG_URL", "postgres://root@127.0.0.1:5432/postgres")
TARGETS = {"runs": 300, "overview": 300, "compare": 500}


def _create_database() -> tuple[str, str]:
    import psycopg

    name = f"t4dm_bench_runs_{secrets.token_hex(4)}"
    with psycopg.connect(PG_URL, autocommit=True, connect_timeout=3) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    return name, PG_URL.rsplit("/", 1)[0] + "/" + name


def _drop_database(name: str) -> None:
    import psycopg

    with psycopg.connect(PG_URL, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def _seed(runs: int, n_experiments: int) -> dict:
    from django.contrib.auth import get_user_model
    from django.db import transaction

    from datasets_app.models import Dataset, DatasetVersion
    from experiments import services
    from experiments.models import JobStatus
    from experiments.tracking.ingest import PointIn, metric_points_ingest
    from t4dm_site.services import api_token_create, role_assign

    user = get_user_model().objects.create_user("bench", password=secrets.token_urlsafe(12))
    role_assign(user=user, role="researcher")
    _, token = api_token_create(user=user)
    dataset = Dataset.objects.create(name="bench-chat", owner=user, task_type="chat")
    DatasetVersion.objects.create(
        dataset=dataset, number=1, content_hash="bench", format="jsonl", task_type="chat",
        path="/nonexistent", validation_status="passed",
        splits={"train": {"rows": 1000}, "validation": {"rows": 100}},
        statistics={"train_samples": 1000, "avg_tokens_input": 40, "avg_tokens_output": 40},
    )  # fmt: skip
    started = time.perf_counter()
    configs = []
    for e in range(n_experiments):
        experiment = services.experiment_create(
            owner=user, name=f"sweep {e:02d}", tags=[f"group-{e % 5}", "bench"]
        )
        for c in range(4):
            configs.append(
                services.training_config_create(
                    owner=user,
                    dataset_id=dataset.public_id,
                    model_base="t4dm-tiny",
                    approach="lora",
                    hyperparams={
                        "learning_rate": [1e-4, 2e-4, 5e-4, 1e-3][c],
                        "lora_r": [4, 8, 16, 32][e % 4],
                    },
                    experiment=experiment,
                )  # fmt: skip
            )
    config_seconds = time.perf_counter() - started
    started = time.perf_counter()
    ends = [JobStatus.SUCCEEDED] * 8 + [JobStatus.FAILED, JobStatus.CANCELLED]
    job_ids = []
    done = 0
    while done < runs:
        with transaction.atomic():  # 250 runs per commit: the services' own statements, fewer fsyncs
            for i in range(done, min(runs, done + 250)):
                config = configs[i % len(configs)]
                job = services.job_start(owner=user, config=config)
                services.job_transition(job=job, to=JobStatus.RUNNING, worker="bench@host")
                base = 2.0 + (i % 97) / 100
                points = []
                for step in (10, 20, 30, 40, 50):
                    points += [
                        PointIn("loss", step, base / (1 + step / 10), wall_time=1.7e9 + step),
                        PointIn("learning_rate", step, 1e-4, wall_time=1.7e9 + step),
                    ]
                points.append(PointIn("val_loss", 50, base / 5.5, wall_time=1.7e9 + 50))
                metric_points_ingest(job=job, points=points)
                end = ends[i % len(ends)]
                if end == JobStatus.FAILED:
                    services.job_transition(job=job, to=end, error="bench: out of memory")
                else:
                    services.job_transition(job=job, to=end)
                job_ids.append(job.public_id)
        done = min(runs, done + 250)
        print(f"  seeded {done} runs ({time.perf_counter() - started:.0f} s)", flush=True)
    return {
        "user": user,
        "token": token,
        "job_ids": job_ids,
        "config_seconds": config_seconds,
        "job_seconds": time.perf_counter() - started,
    }


def _measure(seeded: dict, reps: int) -> list[dict]:
    from django.db import connection
    from django.test import Client
    from django.test.utils import CaptureQueriesContext

    with connection.cursor() as cursor:  # planner statistics, as autovacuum keeps them after a bulk of writes
        cursor.execute("ANALYZE")
    client = Client()
    client.force_login(seeded["user"])
    api = Client(headers={"Authorization": f"Bearer {seeded['token']}"})
    ten = seeded["job_ids"][-10:]
    cases = [
        ("runs", "runs page, first page", client, "/experiments/"),
        ("runs", "runs page, sort by status", client, "/experiments/?sort=status"),
        ("runs", "runs page, sort by loss (final)", client, "/experiments/?sort=loss__final"),
        ("runs", "runs page, sort by hp.learning_rate", client, "/experiments/?sort=-hp.learning_rate"),
        ("runs", "runs page, filter status=failed", client, "/experiments/?status=failed"),
        ("runs", "runs page, filter tag=group-3", client, "/experiments/?tag=group-3"),
        ("runs", "runs page, search q=sweep 07", client, "/experiments/?q=sweep+07"),
        ("runs", "API /runs, first page", api, "/api/v1/runs"),
        ("runs", "API /runs, filter status=failed", api, "/api/v1/runs?status=failed"),
        ("runs", "API /runs, filter tag=group-3", api, "/api/v1/runs?tag=group-3"),
        ("overview", "overview /", client, "/"),
        ("compare", "compare page, 10 runs", client, "/experiments/compare/?jobs=" + ",".join(ten)),
        ("compare", "API /runs/compare, 10 runs", api, "/api/v1/runs/compare?job_ids=" + ",".join(ten)),
    ]
    results = []
    for kind, label, who, url in cases:
        response = who.get(url)  # warm-up (templates, first query plans)
        assert response.status_code == 200, (url, response.status_code, response.content[:500])
        times = []
        for _ in range(reps):
            with CaptureQueriesContext(connection) as queries:
                t0 = time.perf_counter()
                response = who.get(url)
                times.append((time.perf_counter() - t0) * 1000)
            assert response.status_code == 200, url
        results.append(
            {
                "kind": kind,
                "label": label,
                "url": url if len(url) < 60 else url[:57] + "...",
                "median": statistics.median(times),
                "min": min(times),
                "max": max(times),
                "queries": len(queries),
                "bytes": len(response.content),
                "target": TARGETS[kind],
            }
        )
    return results


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--runs", type=int, default=10_000)
    parser.add_argument("--experiments", type=int, default=50)
    parser.add_argument("--reps", type=int, default=7)
    parser.add_argument("--keep", action="store_true", help="keep the database (its name is printed)")
    parser.add_argument("--database", help="measure an existing seeded database (from --keep) instead")
    args = parser.parse_args()

    data = tempfile.mkdtemp(prefix="t4dm-bench-runs-")
    if args.database:
        name, url = args.database, PG_URL.rsplit("/", 1)[0] + "/" + args.database
    else:
        name, url = _create_database()
    os.environ.update(
        DJANGO_SETTINGS_MODULE="t4dm_site.settings",
        DATABASE_URL=url,
        T4DM_DATA_DIR=data,
        CELERY_BROKER_URL="filesystem://",  # job_start enqueues; nothing consumes it here
        T4DM_COMPARE_TO_BASE="0",
    )
    import logging

    import django

    django.setup()
    logging.disable(logging.WARNING)  # axes' login lines, kombu's
    from django.conf import settings
    from django.core.management import call_command

    settings.ALLOWED_HOSTS = [*settings.ALLOWED_HOSTS, "testserver"]
    try:
        if args.database:
            call_command("migrate", verbosity=0)  # indexes added since it was seeded
            from django.contrib.auth import get_user_model

            from t4dm_site.services import api_token_create

            user = get_user_model().objects.get(username="bench")
            from experiments.models import TrainingJob

            ids = [j.public_id for j in TrainingJob.objects.order_by("pk").only("pk")]
            seeded = {"user": user, "token": api_token_create(user=user)[1], "job_ids": ids}
            print(f"database {name}: {len(ids)} runs (seeded before)")
        else:
            started = time.perf_counter()
            call_command("migrate", verbosity=0)
            print(f"database {name}: migrated in {time.perf_counter() - started:.1f} s; seeding")
            seeded = _seed(args.runs, args.experiments)
            print(
                f"seeded {args.experiments} experiments, {args.experiments * 4} configs in "
                f"{seeded['config_seconds']:.1f} s; {args.runs} runs in {seeded['job_seconds']:.1f} s"
            )
        results = _measure(seeded, args.reps)
    finally:
        from django.db import connections

        connections.close_all()
        if not args.keep and not args.database:
            _drop_database(name)
        elif args.keep:
            print(f"kept database {name}")
    load = os.getloadavg()
    print(
        f"\n{len(seeded['job_ids'])} runs; {args.reps} repetitions after a warm-up; server time in process "
        f"(Django test Client); load average {load[0]:.1f} {load[1]:.1f} {load[2]:.1f} on {os.cpu_count()} cores\n"
    )
    print("| read | median ms | min-max ms | queries | target ms | |\n|---|---|---|---|---|---|")
    for r in results:
        ok = "ok" if r["median"] < r["target"] else "SLOW"
        print(
            f"| {r['label']} | {r['median']:.0f} | {r['min']:.0f}-{r['max']:.0f} | {r['queries']} "
            f"| < {r['target']} | {ok} |"
        )


if __name__ == "__main__":
    main()
