"""The `t4dm` command line: the REST API's everyday operations, for a terminal or a shell script.

    t4dm login --url http://t4dm:8000          # asks for the API token, checks it, stores both
    t4dm datasets upload train.jsonl --task-type chat
    t4dm train spec.yaml --follow               # dataset → config → job, then its log until it ends
    t4dm jobs logs job-001 --follow
    t4dm models promote my-model v2

Lists print a table, everything else the server's JSON; `--json` prints JSON for lists too. Errors
print the server's message and exit 1 (2 for a usage error).
"""

from __future__ import annotations

import argparse
import getpass
import json
import os
import sys
from pathlib import Path
from typing import Any

import httpx
import yaml

from t4dm import settings
from t4dm.client import DEFAULT_SERVER_URL, T4DM, T4DMError


# --- output -------------------------------------------------------------------------------------------
def _print_json(value: Any) -> None:
    print(json.dumps(value, indent=2, default=str))


def _table(rows: list[dict], columns: list[str], as_json: bool) -> None:
    if as_json:
        _print_json(rows)
        return
    cells = [[_cell(row.get(c)) for c in columns] for row in rows]
    widths = [max([len(c)] + [len(r[i]) for r in cells]) for i, c in enumerate(columns)]
    print("  ".join(c.upper().ljust(w) for c, w in zip(columns, widths, strict=True)).rstrip())
    for r in cells:
        print("  ".join(v.ljust(w) for v, w in zip(r, widths, strict=True)).rstrip())


def _cell(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.4g}"
    if isinstance(value, dict):
        return " ".join(f"{k}={_cell(v)}" for k, v in value.items())
    return str(value)


# --- the spec file of `t4dm train` ----------------------------------------------------------------------
# The seed's `finetune:` block (as in finetune.example.yaml) may stand in for hyperparams.
_SEED_TRAINING = {"max_epochs": "epochs"}
_SEED_LORA = {
    "r": "lora_r",
    "alpha": "lora_alpha",
    "dropout": "lora_dropout",
    "target_modules": "target_modules",
}


def load_spec(path: Path) -> dict:
    """Read a training spec: `dataset` (a local file, uploaded; or a dataset id ds-…), `model_base`, and
    optionally `task_type`, `format`, `approach`, `hyperparams`, `early_stopping`, `checkpointing`,
    `experiment_id`, `queue`, or a seed-style `finetune:` block."""
    try:
        spec = yaml.safe_load(path.read_text()) or {}
    except (OSError, yaml.YAMLError) as exc:
        raise SystemExit(f"t4dm: cannot read {path}: {exc}") from exc
    if not isinstance(spec, dict):
        raise SystemExit(f"t4dm: {path}: expected a mapping of keys, got {type(spec).__name__}")
    finetune = spec.pop("finetune", None) or {}
    hyperparams: dict[str, Any] = {}
    for key, value in (finetune.get("training") or {}).items():
        if key != "early_stopping_patience":
            hyperparams[_SEED_TRAINING.get(key, key)] = value
    for key, value in (finetune.get("lora") or {}).items():
        hyperparams[_SEED_LORA.get(key, f"lora_{key}")] = value
    spec["hyperparams"] = {**hyperparams, **(spec.get("hyperparams") or {})} or None
    if finetune.get("default_approach") and not spec.get("approach"):
        spec["approach"] = finetune["default_approach"]
    if finetune.get("checkpointing") and not spec.get("checkpointing"):
        spec["checkpointing"] = finetune["checkpointing"]
    patience = (finetune.get("training") or {}).get("early_stopping_patience")
    if patience and not spec.get("early_stopping"):
        spec["early_stopping"] = {"patience": patience}
    missing = [k for k in ("dataset", "model_base") if not spec.get(k)]
    if missing:
        raise SystemExit(f"t4dm: {path}: missing {', '.join(missing)}")
    dataset = str(spec["dataset"])
    if not dataset.startswith("ds-"):
        local = Path(dataset) if Path(dataset).is_absolute() else path.parent / dataset
        spec["dataset"] = str(local) if local.is_file() else dataset  # else: a path on the server
    return spec


# --- commands ------------------------------------------------------------------------------------------
def cmd_login(args, _client_factory) -> int:
    url = (args.url or os.environ.get("T4DM_SERVER_URL") or settings.load().get("server_url") or "").rstrip(
        "/"
    )
    if not url:
        url = input(f"T4DM server URL [{DEFAULT_SERVER_URL}]: ").strip() or DEFAULT_SERVER_URL
    token = args.token
    if token == "-":
        token = sys.stdin.readline().strip()
    elif not token:
        token = getpass.getpass(
            "API token (Settings → API tokens, or `manage.py create_api_token`): "
        ).strip()
    with T4DM(url, token=token, max_retries=1) as client:
        client.request("GET", "/jobs")  # 401 here: the token is wrong, and nothing is stored
    path = settings.save(server_url=url, token=token)
    print(f"Logged in to {url}; saved to {path}")
    return 0


def cmd_datasets(args, client: T4DM) -> int:
    if args.action == "upload":
        options = {"name": args.name} if args.name else {}
        _print_json(
            client.prepare_dataset(args.file, format=args.format, task_type=args.task_type, **options)
        )
    elif args.action == "list":
        rows = [{**d, **(d.get("statistics") or {}), "validation": (d.get("validation") or {}).get("status")}
                for d in client.list_datasets()]  # fmt: skip
        _table(rows, ["dataset_id", "name", "task_type", "total_samples", "validation"], args.json)
    else:
        _print_json(client.dataset(args.dataset_id))
    return 0


def cmd_train(args, client: T4DM) -> int:
    spec = load_spec(Path(args.spec))
    dataset_id = spec["dataset"]
    if not dataset_id.startswith("ds-"):
        extra = {"name": spec["dataset_name"]} if spec.get("dataset_name") else {}
        dataset = client.prepare_dataset(
            dataset_id, format=spec.get("format", "jsonl"), task_type=spec.get("task_type", "chat"), **extra
        )
        dataset_id = dataset["dataset_id"]
        print(f"dataset {dataset_id}", file=sys.stderr)
    options = {k: spec[k] for k in ("early_stopping", "checkpointing", "experiment_id", "queue", "template")
               if spec.get(k)}  # fmt: skip
    config = client.configure_training(
        spec["model_base"],
        dataset_id,
        approach=spec.get("approach"),
        hyperparams=spec["hyperparams"],
        **options,
    )
    print(f"config {config['config_id']}", file=sys.stderr)
    job = client.start_training(config["config_id"])
    print(f"job {job['job_id']} {job['status']}", file=sys.stderr)
    if args.follow:  # the log on stderr: stdout stays the job's JSON, for scripts
        _follow(client, job["job_id"], out=sys.stderr)
    if args.follow or args.wait:
        job = client.wait_for_job(job["job_id"], poll=0.5)
    _print_json(job)
    return 0 if job["status"] not in ("failed", "cancelled") else 1


def _follow(client: T4DM, job_id: str, out=None) -> None:
    for event in client.follow_job_events(job_id, poll=0.5):
        print(f"{event['created_at']} {event['level'].upper():7} {event['message']}", file=out, flush=True)


def cmd_jobs(args, client: T4DM) -> int:
    if args.action == "list":
        rows = [{**j, "step": f"{j['progress'].get('step')}/{j['progress'].get('total_steps')}"}
                for j in client.list_jobs(args.status)]  # fmt: skip
        _table(rows, ["job_id", "status", "config_id", "step", "started_at", "finished_at"], args.json)
    elif args.action == "show":
        _print_json(client.monitor_training(args.job_id))
    elif args.action == "logs":
        if args.follow:
            _follow(client, args.job_id)
        else:
            for event in client.job_events(args.job_id):
                print(f"{event['created_at']} {event['level'].upper():7} {event['message']}")
    elif args.action == "cancel":
        _print_json(client.cancel_training(args.job_id))
    elif args.action == "resume":
        _print_json(client.resume_training(args.job_id, step=args.step))
    return 0


def cmd_eval(args, client: T4DM) -> int:
    metrics = args.metrics.split(",") if args.metrics else None
    options = {"max_samples": args.max_samples} if args.max_samples else {}
    result = client.evaluate_model(args.model, args.dataset, metrics, **options)
    if args.wait:
        result = client.wait_for_evaluation(result["evaluation_id"], poll=0.5)
    _print_json(result)
    return 0 if result["status"] != "failed" else 1


def cmd_models(args, client: T4DM) -> int:
    if args.action == "list":
        if args.model_id:
            _table(
                client.model_versions(args.model_id), ["model_id", "version", "stage", "job_id"], args.json
            )
        else:
            columns = ["model_id", "owner", "versions", "latest_version", "production_version", "base_model"]
            _table(client.list_models(), columns, args.json)
    elif args.action == "promote":
        _print_json(
            client.promote_model(
                args.model_id, args.version, args.stage, reason=args.reason, override=args.override
            )
        )
    elif args.action == "export":
        export = client.export_model(args.model_id, args.version, merge=not args.no_merge)
        if args.download:
            export = {**export, "downloaded_to": str(client.download_export(export, args.download))}
        _print_json(export)
    return 0


def cmd_up(args, _client_factory) -> int:
    """The embedded platform (web server + one worker): only where the server package is installed."""
    try:
        import django

        import t4dm_site  # noqa: F401
    except ImportError:
        print(
            "t4dm up starts the embedded T4DM platform, which is not installed here: this environment has "
            "only the client (t4dm-client). Install the server from the repository (`pip install -e .` "
            "in its root, or `make run`), or point the client at a running server with `t4dm login`.",
            file=sys.stderr,
        )
        return 1
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "t4dm_site.settings")
    from django.core.management import call_command, execute_from_command_line

    django.setup()
    call_command("migrate", "--noinput", verbosity=0)
    argv = ["t4dm", "t4dm_up", "--host", args.host, "--port", str(args.port)]
    if args.no_worker:
        argv.append("--no-worker")
    execute_from_command_line(argv)
    return 0


# --- the parser ------------------------------------------------------------------------------------------
def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="t4dm", description="Command line for a T4DM Fine-Tune server.")
    parser.add_argument("--url", help="server URL (default: T4DM_SERVER_URL, then `t4dm login`'s file)")
    parser.add_argument("--token", help="API token (default: T4DM_API_TOKEN, then `t4dm login`'s file)")
    parser.add_argument("--json", action="store_true", help="print lists as JSON, not a table")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    login = sub.add_parser("login", help="check and store the server URL and API token (file mode 0600)")
    login.set_defaults(func=cmd_login, needs_client=False)

    datasets = sub.add_parser("datasets", help="upload, list and show datasets")
    ds = datasets.add_subparsers(dest="action", required=True)
    upload = ds.add_parser("upload", help="upload and prepare a dataset file (prepare_dataset)")
    upload.add_argument("file")
    upload.add_argument("--task-type", default="chat", help="chat | completion | classification | …")
    upload.add_argument("--format", default="jsonl")
    upload.add_argument("--name")
    ds.add_parser("list")
    ds.add_parser("show").add_argument("dataset_id")
    datasets.set_defaults(func=cmd_datasets)

    train = sub.add_parser(
        "train", help="start training from a spec file (dataset, model_base, hyperparams…)"
    )
    train.add_argument("spec", help="a YAML file; see docs/clients.md")
    train.add_argument(
        "--wait", action="store_true", help="wait until the job ends; exit 1 unless it succeeded"
    )
    train.add_argument(
        "--follow", action="store_true", help="print the job's log until it ends (implies --wait)"
    )
    train.set_defaults(func=cmd_train)

    jobs = sub.add_parser("jobs", help="list, show, follow, cancel and resume training jobs")
    js = jobs.add_subparsers(dest="action", required=True)
    js.add_parser("list").add_argument("--status")
    js.add_parser("show").add_argument("job_id")
    logs = js.add_parser("logs", help="the job's log lines")
    logs.add_argument("job_id")
    logs.add_argument("--follow", "-f", action="store_true", help="keep printing until the job ends")
    js.add_parser("cancel").add_argument("job_id")
    resume = js.add_parser("resume", help="a new job from one of this job's checkpoints")
    resume.add_argument("job_id")
    resume.add_argument("--step", type=int, help="the checkpoint's step (default: the latest)")
    jobs.set_defaults(func=cmd_jobs)

    evaluate = sub.add_parser("eval", help="evaluate a model on a test dataset (evaluate_model)")
    evaluate.add_argument("model", help="a job id, model version ref (my-model/v2) or base model")
    evaluate.add_argument("dataset", help="a dataset id ds-…")
    evaluate.add_argument("--metrics", help="comma-separated, e.g. accuracy,perplexity")
    evaluate.add_argument("--max-samples", type=int)
    evaluate.add_argument("--wait", action="store_true", help="wait for the result")
    evaluate.set_defaults(func=cmd_eval)

    models = sub.add_parser("models", help="list, promote and export registered models")
    ms = models.add_subparsers(dest="action", required=True)
    ms.add_parser("list", help="models, or one model's versions").add_argument("model_id", nargs="?")
    promote = ms.add_parser("promote", help="move a version to a stage (default production)")
    promote.add_argument("model_id")
    promote.add_argument("version", help="e.g. v2")
    promote.add_argument("--stage", default="production")
    promote.add_argument("--reason", default="")
    promote.add_argument(
        "--override", action="store_true", help="admins: past a failing gate (give --reason)"
    )
    export = ms.add_parser("export", help="export a version (merged weights) and optionally download it")
    export.add_argument("model_id")
    export.add_argument("version")
    export.add_argument("--no-merge", action="store_true", help="keep the adapter separate")
    export.add_argument("--download", metavar="PATH", help="save the .tar.gz here (a folder or file)")
    models.set_defaults(func=cmd_models)

    up = sub.add_parser("up", help="run the embedded platform here (needs the server package)")
    up.add_argument("--host", default="127.0.0.1")
    up.add_argument("--port", default=8000, type=int)
    up.add_argument("--no-worker", action="store_true")
    up.set_defaults(func=cmd_up, needs_client=False)

    login.add_argument("--url", dest="url", default=argparse.SUPPRESS, help="server URL")
    login.add_argument("--token", dest="token", default=argparse.SUPPRESS, help="API token; '-' reads stdin")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if not getattr(args, "needs_client", True):
        try:
            return args.func(args, None)
        except T4DMError as exc:
            print(f"t4dm: {exc.message} (HTTP {exc.status})", file=sys.stderr)
            return 1
        except httpx.TransportError as exc:
            print(f"t4dm: cannot reach the server: {exc}", file=sys.stderr)
            return 1
    stored = settings.load()
    url = args.url or os.environ.get("T4DM_SERVER_URL") or stored.get("server_url") or DEFAULT_SERVER_URL
    token = args.token or os.environ.get("T4DM_API_TOKEN") or stored.get("token") or ""
    try:
        with T4DM(url, token=token) as client:
            return args.func(args, client)
    except T4DMError as exc:
        print(
            f"t4dm: {exc.message} (HTTP {exc.status}{', ' + exc.code if exc.code else ''})", file=sys.stderr
        )
        return 1
    except KeyboardInterrupt:
        return 130
    except httpx.TransportError as exc:
        print(f"t4dm: cannot reach {url}: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
