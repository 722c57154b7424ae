"""CLI: ``python -m experiments.training --config spec.json``, ``... build-tiny-model OUT_DIR``, or
``... prepare-benchmark OUT_DIR --shape llama-3-8b`` (see experiments/training/benchmark.py)."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["build-tiny-model"]:
        parser = argparse.ArgumentParser(prog="python -m experiments.training build-tiny-model")
        parser.add_argument("output_dir", type=Path)
        parser.add_argument("--seed", type=int, default=0)
        args = parser.parse_args(argv[1:])
        from experiments.training.tiny_model import build_tiny_model

        print(build_tiny_model(args.output_dir, seed=args.seed))
        return 0

    if argv[:1] == ["prepare-benchmark"]:
        parser = argparse.ArgumentParser(prog="python -m experiments.training prepare-benchmark")
        parser.add_argument("output_dir", type=Path)
        parser.add_argument("--shape", default="llama-3-8b")
        parser.add_argument("--steps", type=int, default=30)
        parser.add_argument("--approach", default="lora")
        args = parser.parse_args(argv[1:])
        from experiments.training.benchmark import prepare_benchmark

        print(prepare_benchmark(args.output_dir, shape=args.shape, steps=args.steps, approach=args.approach))
        return 0

    parser = argparse.ArgumentParser(prog="python -m experiments.training", description=__doc__)
    parser.add_argument("--config", type=Path, required=True, help="job spec JSON file")
    parser.add_argument("--result", type=Path, help="also write the result JSON here (rank 0)")
    parser.add_argument(
        "--report-to",
        metavar="SERVER_URL",
        help="report to the platform (job token in T4DM_JOB_TOKEN) instead of printing JSON lines",
    )
    args = parser.parse_args(argv)
    spec = json.loads(args.config.read_text(encoding="utf-8"))

    import os

    import datasets

    from experiments.training.engine import train
    from experiments.training.reporter import NullReporter, StdoutReporter

    datasets.disable_progress_bars()
    # Under torchrun every process trains its share; only rank 0 reports and writes the result.
    rank = int(os.environ.get("RANK", "0"))
    client = None
    if rank != 0:
        reporter = NullReporter()
    elif args.report_to:
        from experiments.training.http_reporter import HttpReporter, PlatformClient

        client = PlatformClient(args.report_to, spec["job_id"], os.environ["T4DM_JOB_TOKEN"])
        reporter = HttpReporter(client)
    else:
        reporter = StdoutReporter()
    try:
        result = train(spec, reporter)
    finally:
        if client is not None:
            reporter.close()
            client.close()
    if rank == 0:
        if args.result:
            args.result.write_text(json.dumps(result))
        if not args.report_to:
            print(json.dumps({"event": "result", **result}), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
