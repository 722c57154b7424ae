"""A serving worker: a Celery worker on the serving queue (T4DM_SERVING_QUEUE) with a thread pool, so
that concurrent requests reach the engine together and run as one batch (models_registry/serving/).

`t4dm_up` starts one beside the training worker; on a GPU box run `manage.py t4dm_serving_worker`
with the broker URL and T4DM_SERVER_URL (it needs no database)."""

from __future__ import annotations

from django.conf import settings
from django.core.management.base import BaseCommand


def serving_worker_argv(*, name: str = "t4dm-serving@%h") -> list[str]:
    return [
        "worker",
        "-Q",
        settings.SERVING_QUEUE,
        "-P",
        "threads",
        "-c",
        str(settings.SERVING_CONCURRENCY),
        "-n",
        name,
        "--loglevel",
        "INFO",
        "--without-gossip",
        "--without-mingle",
    ]


class Command(BaseCommand):
    help = "Run a Celery worker that serves /v1/chat/completions and /v1/completions requests."

    def add_arguments(self, parser):
        parser.add_argument("--name", default="t4dm-serving@%h", help="the worker's node name")

    def handle(self, *args, name, **options):
        from t4dm_site.celery import app

        app.worker_main(serving_worker_argv(name=name))
