"""Benchmark: prepare + validate a generated chat JSONL (default 1,000,000 rows) on this machine.

    .venv/bin/python benchmarks/dataset_prepare.py [--rows 1000000]

Prints rows/s for each phase and the peak RSS of the process. Uses a throwaway SQLite database and
artifact folder under a temporary directory; builds the tiny model there for its tokenizer.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import resource
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

WORDS = (
    "model data train loss token batch learning rate adapter checkpoint epoch gradient dataset split "
    "question answer platform queue worker metric evaluate version registry prompt response system"
).split()


def generate(path: Path, rows: int, seed: int = 0) -> int:
    rng = random.Random(seed)
    with path.open("w") as out:
        for i in range(rows):
            q = " ".join(rng.choices(WORDS, k=rng.randint(6, 20)))
            a = " ".join(rng.choices(WORDS, k=rng.randint(8, 40)))
            row = {
                "messages": [
                    {"role": "system", "content": "You are a helpful assistant."},
                    {"role": "user", "content": f"{q} #{i}?"},
                    {"role": "assistant", "content": f"{a}."},
                ]
            }
            out.write(json.dumps(row) + "\n")
    return path.stat().st_size


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, default=1_000_000)
    args = parser.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="t4dm-bench-"))
    os.environ.update(
        T4DM_DATA_DIR=str(tmp),
        T4DM_IMPORT_ROOT=str(tmp / "imports"),
        DJANGO_SETTINGS_MODULE="t4dm_site.settings",
    )
    import django

    django.setup()
    from django.contrib.auth import get_user_model
    from django.core.management import call_command

    from experiments.training.tiny_model import build_tiny_model

    call_command("migrate", verbosity=0)
    from django.conf import settings

    build_tiny_model(settings.TINY_MODEL_DIR, seed=0)
    (tmp / "imports").mkdir()
    source = tmp / "imports" / "chat.jsonl"
    started = time.perf_counter()
    size = generate(source, args.rows)
    print(f"generated {args.rows:,} rows ({size / 1e6:.0f} MB) in {time.perf_counter() - started:.1f} s")

    from datasets_app.services import dataset_prepare, dataset_validate

    owner = get_user_model().objects.create_user("bench")
    started = time.perf_counter()
    version = dataset_prepare(owner=owner, name="bench", source_path="chat.jsonl", task_type="chat")
    prepare_s = time.perf_counter() - started
    print(
        f"prepare: {prepare_s:.1f} s, {args.rows / prepare_s:,.0f} rows/s, status {version.validation_status}, "
        f"stats {json.dumps({k: version.statistics[k] for k in ('train_samples', 'val_samples', 'test_samples', 'tokens_input', 'tokens_output')})}"
    )
    print(f"peak RSS after prepare: {peak_rss_mb():,.0f} MB")
    started = time.perf_counter()
    result = dataset_validate(source_path="chat.jsonl", task_type="chat")
    validate_s = time.perf_counter() - started
    print(f"validate: {validate_s:.1f} s, {args.rows / validate_s:,.0f} rows/s, status {result['status']}")
    total = prepare_s + validate_s
    print(
        f"prepare + validate: {total:.1f} s, {args.rows / total:,.0f} rows/s; peak RSS {peak_rss_mb():,.0f} MB"
    )


if __name__ == "__main__":
    main()
