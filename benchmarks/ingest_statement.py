"""The ingest statement alone, old against new: PostgreSQL's cost per ingested point.

    .venv/bin/python benchmarks/ingest_statement.py [--reps 15] [--rounds 5] [--batches 20]

Makes a scratch database on the PostgreSQL server of T4DM_BENCH_POSTGRES_URL (default
postgres://postgres@127.0.0.1:5432/postgres), migrates it, and copies the metric tables (with their
indexes) into two schemas, one per variant, so the variants never share a table. Both run as the worker's
lean path runs them (t4dm_site/fast_ingest.py): the job-token variant (`INSERT_POSTGRESQL_JOB_TOKEN`,
built from each statement by the same marker replacement), prepared, one autocommit statement per batch.
`old` is the statement as of commit 73e76a9 (frozen below); `new` is experiments/tracking/ingest.py's.

- One connection: batches of one step (2 points: ms per batch), 1,000 and 5,000 fresh points (2 series
  stepping together, as benchmarks/ingest_vs_mlflow.py sends them), the variants alternating batch by
  batch, `--reps` each:
  wall ms per batch (statement + commit, as the client sees it) and the backend's CPU ms
  (/proc/<pid>/schedstat), median and min-max. Then 1,000 points that are all repeats (a resent batch).
- 1, 2 and 4 connections at once, each with its own job, `--batches` batches of 1,000 points each:
  points/s, the variants alternating round by round (`--rounds`), median and min-max.

The machine is shared: compare the variants within one run.
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

_POINTS, _ROLLUPS, _JOBS = "experiments_metricpoint", "experiments_metricrollup", "experiments_trainingjob"

# The statement as of commit 73e76a9 (before issue 21's changes), for the comparison.
OLD_STATEMENT = f"""
WITH body AS (
    SELECT %(body)s::json -> 'points' AS points
), incoming AS (
    SELECT t.raw_key #>> '{{}}' AS key, t.raw_key::text AS raw_key, t.step, t.value,
           COALESCE(t.wall_time, %(now)s) AS wall_time, t.wall_time AS sent_wall_time, t.epoch, t.i
    FROM body, ROWS FROM (
        json_to_recordset(CASE json_typeof(points) WHEN 'array' THEN points ELSE '[]' END)
        AS (key json, step bigint, value float8, wall_time float8, epoch float8)
    ) WITH ORDINALITY AS t(raw_key, step, value, wall_time, epoch, i)
), problems AS (
    -- A value PostgreSQL cannot read as its column's type (1.5 as a step, 1e400, "abc") is an error,
    -- handled like these. Keys are checked once per distinct key: JSON strings, matching the pattern.
    SELECT (
        SELECT count(*) FROM incoming
        WHERE (
            step >= 0 AND value NOT IN ('NaN', 'Infinity', '-Infinity')
            AND (sent_wall_time IS NULL OR sent_wall_time NOT IN ('NaN', 'Infinity', '-Infinity'))
            AND (epoch IS NULL OR epoch NOT IN ('NaN', 'Infinity', '-Infinity'))
        ) IS NOT TRUE
    ) + (
        SELECT count(*) FROM (SELECT DISTINCT raw_key FROM incoming OFFSET 0) AS keys
        WHERE (json_typeof(raw_key::json) = 'string' AND (raw_key::json #>> '{{}}') ~ %(key_pattern)s)
              IS NOT TRUE
    ) AS n
), accepted AS (
    SELECT (SELECT json_typeof(points) = 'array' FROM body)
           AND (SELECT count(*) FROM incoming) <= %(limit)s AND (SELECT n FROM problems) = 0 AS ok
), inserted AS (
    -- Within a batch the last value for a (key, step) wins: it is inserted first, the others conflict.
    INSERT INTO {_POINTS} (job_id, key, step, value, wall_time, epoch)
    SELECT %(job)s, key, step, value, wall_time, epoch FROM incoming
    WHERE (SELECT ok FROM accepted)
    ORDER BY key, step, i DESC
    ON CONFLICT (job_id, key, step) DO NOTHING
    RETURNING id, key, step, value, wall_time
), folded AS (
    -- Each bucket also remembers its first step and the steps of its extremes (the earliest on a
    -- tie), so a downsampled read places every point at its own step (M4).
    INSERT INTO {_ROLLUPS} AS r (job_id, key, bucket, lo, hi, n, first_wall_time, last_step,
                                 first_step, lo_step, hi_step)
    SELECT %(job)s, key, step / %(width)s::bigint, min(value), max(value), count(*),
           min(wall_time), max(step), min(step),
           (array_agg(step ORDER BY value, step))[1], (array_agg(step ORDER BY value DESC, step))[1]
    FROM inserted GROUP BY key, step / %(width)s::bigint
    ON CONFLICT (job_id, key, bucket) DO UPDATE SET
        lo = LEAST(r.lo, EXCLUDED.lo),
        hi = GREATEST(r.hi, EXCLUDED.hi),
        n = r.n + EXCLUDED.n,
        first_wall_time = LEAST(r.first_wall_time, EXCLUDED.first_wall_time),
        last_step = GREATEST(r.last_step, EXCLUDED.last_step),
        first_step = LEAST(r.first_step, EXCLUDED.first_step),
        lo_step = CASE WHEN EXCLUDED.lo < r.lo THEN EXCLUDED.lo_step ELSE r.lo_step END,
        hi_step = CASE WHEN EXCLUDED.hi > r.hi THEN EXCLUDED.hi_step ELSE r.hi_step END
), latest AS (
    UPDATE {_JOBS} SET latest_metrics = latest_metrics || (
        SELECT jsonb_object_agg(key, value)
        FROM (SELECT DISTINCT ON (key) key, value FROM inserted ORDER BY key, step DESC) AS last
    )
    WHERE id = %(job)s AND EXISTS (SELECT 1 FROM inserted)
)
SELECT (SELECT ok FROM accepted), (SELECT count(*) FROM incoming), count(*), min(id), max(id),
       json_agg(json_build_object('id', id, 'key', key, 'step', step, 'value', value, 't', wall_time)
                ORDER BY id)::text
FROM inserted
"""

TABLES = (_POINTS, _ROLLUPS, _JOBS)
TOKEN_HASH = "0" * 64


def job_token_variant(statement: str) -> str:
    """The lean path's variant of a statement, by the replacement experiments/tracking/ingest.py makes."""
    from experiments.tracking import ingest

    return statement.replace("WITH body AS (", ingest._JOB_TOKEN_LOCK).replace(
        ingest._ACCEPTED,
        "SELECT EXISTS (SELECT 1 FROM job) AND (SELECT json_typeof(points) = 'array' FROM body)",
    )


def body(job: int, start: int, n: int, keys: int = 2) -> str:
    points = [
        {
            "key": f"metric_{k}",
            "step": step,
            "value": 1.0 / (step + 1) + k + job * 1e-6,
            "wall_time": 1_700_000_000 + step / 100,
        }  # fmt: skip
        for step in range(start, start + n // keys)
        for k in range(keys)
    ]
    return json.dumps({"points": points})


def cpu_ms(pid: int) -> float | None:
    try:
        with open(f"/proc/{pid}/schedstat") as f:
            return int(f.read().split()[0]) / 1e6
    except OSError:
        return None


class Variant:
    def __init__(self, name: str, statement: str, url: str, schema: str) -> None:
        self.name, self.statement, self.url, self.schema = name, job_token_variant(statement), url, schema
        self.next_job = 1

    def connect(self):
        import psycopg

        return psycopg.connect(self.url, autocommit=True, prepare_threshold=1,
                               options=f"-c search_path={self.schema}")  # fmt: skip

    def new_job(self) -> int:
        with self.connect() as conn:
            return conn.execute(
                f"INSERT INTO {_JOBS} (status, epoch, step, total_steps, latest_metrics, worker, cancel_requested,"
                " token_hash, output_dir, final_model_path, error, created_at, config_id, experiment_id, owner_id,"
                " lost_count, attempt, retired_token_hashes, name, tags, rendezvous)"
                " VALUES ('running', 0, 0, 0, '{}', '', false, %s, '', '', '', now(), 1, 1, 1, 0, 1, '[]', '', '[]', '{}')"
                " RETURNING id",
                (TOKEN_HASH,),
            ).fetchone()[0]

    def run(self, conn, job: int, text: str, expect: int) -> None:
        from experiments.tracking.ingest import statement_params

        row = conn.execute(
            self.statement, statement_params(job, text, time.time(), token_hash=TOKEN_HASH)
        ).fetchone()
        if not row[0] or row[2] != expect:
            raise SystemExit(f"{self.name}: the statement answered {row[:5]}, expected {expect} stored")


def scratch_database(base_url: str) -> str:
    import psycopg

    name = f"t4dm_bench_stmt_{secrets.token_hex(4)}"
    with psycopg.connect(base_url, autocommit=True) as conn:
        conn.execute(f"CREATE DATABASE {name}")
    url = base_url.rsplit("/", 1)[0] + f"/{name}"
    subprocess.run([sys.executable, "manage.py", "migrate", "-v0"], cwd=ROOT, check=True,
                   env={**os.environ, "DATABASE_URL": url})  # fmt: skip
    with psycopg.connect(url, autocommit=True) as conn:
        for schema in ("old", "new"):
            conn.execute(f"CREATE SCHEMA {schema}")
            for table in TABLES:
                conn.execute(f"CREATE TABLE {schema}.{table} (LIKE public.{table} INCLUDING ALL)")
    return url


def drop_database(base_url: str, url: str) -> None:
    import psycopg

    with psycopg.connect(base_url, autocommit=True) as conn:
        conn.execute(f"DROP DATABASE IF EXISTS {url.rsplit('/', 1)[1]} WITH (FORCE)")


def spread(values: list[float], digits: int = 2) -> str:
    return f"{statistics.median(values):,.{digits}f} ({min(values):,.{digits}f}-{max(values):,.{digits}f})"


def one_connection(variants: list[Variant], size: int, reps: int, repeats: bool = False) -> dict:
    conns = {v.name: v.connect() for v in variants}
    pids = {name: conn.execute("SELECT pg_backend_pid()").fetchone()[0] for name, conn in conns.items()}
    jobs = {v.name: v.new_job() for v in variants}
    wall: dict[str, list[float]] = {v.name: [] for v in variants}
    cpu: dict[str, list[float]] = {v.name: [] for v in variants}
    for rep in range(reps + 3):  # the first 3: prepare, warm up
        for v in variants if rep % 2 == 0 else variants[::-1]:
            conn, job = conns[v.name], jobs[v.name]
            start = rep * size
            if repeats:
                v.run(conn, job, body(job, start, size), size)
            text = body(job, start, size)
            c0, t0 = cpu_ms(pids[v.name]), time.perf_counter()
            v.run(conn, job, text, 0 if repeats else size)
            t1, c1 = time.perf_counter(), cpu_ms(pids[v.name])
            if rep >= 3:
                wall[v.name].append((t1 - t0) * 1000)
                if c0 is not None and c1 is not None:
                    cpu[v.name].append(c1 - c0)
    for conn in conns.values():
        conn.close()
    return {"wall": wall, "cpu": cpu}


def concurrent(variant: Variant, clients: int, batches: int, size: int = 1000) -> float:
    jobs = [variant.new_job() for _ in range(clients)]
    conns = [variant.connect() for _ in range(clients)]
    bodies = [[body(job, b * size, size) for b in range(batches + 1)] for job in jobs]
    for conn, job, texts in zip(conns, jobs, bodies, strict=True):
        variant.run(conn, job, texts[0], size)  # prepare
    barrier = threading.Barrier(clients + 1)

    def client(i: int) -> None:
        barrier.wait()
        for text in bodies[i][1:]:
            variant.run(conns[i], jobs[i], text, size)

    threads = [threading.Thread(target=client, args=(i,)) for i in range(clients)]
    for thread in threads:
        thread.start()
    barrier.wait()
    started = time.perf_counter()
    for thread in threads:
        thread.join()
    seconds = time.perf_counter() - started
    for conn in conns:
        conn.close()
    return clients * batches * size / seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--reps", type=int, default=15, help="batches per variant and size, one connection")
    parser.add_argument("--rounds", type=int, default=5, help="rounds of the concurrent phases")
    parser.add_argument(
        "--batches", type=int, default=20, help="1,000-point batches per connection per round"
    )
    args = parser.parse_args()
    base_url = os.environ.get("T4DM_BENCH_POSTGRES_URL", "postgres://postgres@127.0.0.1:5432/postgres")
    url = scratch_database(base_url)
    os.environ["DATABASE_URL"] = url
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "t4dm_site.settings")
    import django

    django.setup()
    from experiments.tracking import ingest

    variants = [
        Variant("old", OLD_STATEMENT, url, "old"),
        Variant("new", ingest._INSERT_POSTGRESQL, url, "new"),
    ]
    try:
        print(
            f"ingest statement, old vs new; {os.cpu_count()} CPUs; PostgreSQL at {base_url.rsplit('@', 1)[-1]}"
        )
        rows = []
        for size, repeats in ((2, False), (1000, False), (5000, False), (1000, True)):
            result = one_connection(variants, size, args.reps, repeats)
            label = f"{size:,} {'repeated ' if repeats else ''}points, 1 connection"
            if size < 1000:
                label += " (ms per batch)"
            for v in variants:
                wall, cpu = result["wall"][v.name], result["cpu"][v.name]
                per = 1000 / size if size >= 1000 else 1
                rows.append((label, v.name, spread([w * per for w in wall]),
                             spread([c * per for c in cpu]) if cpu else "-", "-"))  # fmt: skip
            print(f"  {label}: done", flush=True)
        rates: dict[tuple[int, str], list[float]] = {}
        for rnd in range(args.rounds):
            for clients in (1, 2, 4):
                for v in variants if (rnd + clients) % 2 == 0 else variants[::-1]:
                    rates.setdefault((clients, v.name), []).append(concurrent(v, clients, args.batches))
            print(f"  concurrent round {rnd + 1}: done", flush=True)
        for clients in (1, 2, 4):
            for v in variants:
                rows.append((f"1,000-point batches, {clients} connection(s)", v.name, "-", "-",
                             spread(rates[(clients, v.name)], 0)))  # fmt: skip
        header = ("phase", "statement", "wall ms per 1,000 points", "backend CPU ms per 1,000", "points/s")
        widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]
        print()
        print(" | ".join(h.ljust(w) for h, w in zip(header, widths, strict=True)))
        print("-+-".join("-" * w for w in widths))
        for row in rows:
            print(" | ".join(str(c).ljust(w) for c, w in zip(row, widths, strict=True)))
        print(
            "\nmedian (min-max); wall: statement and commit as the client sees it; 5,000-point rows divided by 5"
        )
    finally:
        drop_database(base_url, url)


if __name__ == "__main__":
    main()
