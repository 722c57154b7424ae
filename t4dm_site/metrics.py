"""Prometheus metrics at /metrics, for operators.

Most values are read from the database at scrape time (`PlatformCollector`), so they are right whichever
web process answers the scrape and however many workers report: jobs by status and queue (queue depth,
running jobs), evaluations by status, each worker's status, heartbeat age and GPU memory, and the
metric points ingested (the highest point id: ids grow with every stored point, so `rate()` over it is
the ingest rate). Request latencies are a histogram kept in each web process by
`RequestLatencyMiddleware` (labelled by URL route, not raw path, so the series stay few); with several
ASGI processes each scrape sees the process that answered it.

Access: `Authorization: Bearer $T4DM_METRICS_TOKEN` when that setting is set, or an admin (API token or
session). Anyone else gets 401 (no credentials) or 403.
"""

from __future__ import annotations

import hmac
import time

from asgiref.sync import iscoroutinefunction, markcoroutinefunction
from django.conf import settings
from django.db.models import Count
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.utils import timezone
from django.views.decorators.http import require_GET
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

REQUEST_LATENCY = Histogram(
    "t4dm_http_request_duration_seconds",
    "Time to answer an HTTP request (until the response object is ready; a stream's body is not counted).",
    ["method", "route", "status"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
)


class PlatformCollector(Collector):
    """Platform state, queried from the database on every scrape."""

    def collect(self):
        from experiments.models import Evaluation, JobStatus, TrainingJob, Worker
        from experiments.tracking.series import points_last_id

        jobs = GaugeMetricFamily("t4dm_jobs", "Training jobs by status.", labels=["status"])
        counts = dict(TrainingJob.objects.values_list("status").annotate(n=Count("id")).order_by())
        for status in JobStatus.values:
            jobs.add_metric([status], counts.get(status, 0))
        yield jobs

        queued = GaugeMetricFamily(
            "t4dm_queue_depth",
            "Training jobs waiting for a worker, by queue (blank: the default).",
            labels=["queue"],
        )
        by_queue = (
            TrainingJob.objects.filter(status=JobStatus.QUEUED)
            .values_list("config__queue")
            .annotate(n=Count("id"))
            .order_by()
        )
        for queue, n in by_queue:
            queued.add_metric([queue or settings.CELERY_TASK_DEFAULT_QUEUE], n)
        yield queued

        yield GaugeMetricFamily(
            "t4dm_jobs_running", "Training jobs running now.", value=counts.get(JobStatus.RUNNING, 0)
        )

        evaluations = GaugeMetricFamily("t4dm_evaluations", "Evaluations by status.", labels=["status"])
        for status, n in Evaluation.objects.values_list("status").annotate(n=Count("id")).order_by():
            evaluations.add_metric([status], n)
        yield evaluations

        up = GaugeMetricFamily("t4dm_worker_up", "1 while the worker heartbeats (idle or busy), 0 when lost.", labels=["worker", "status"])  # fmt: skip
        last = GaugeMetricFamily("t4dm_worker_last_heartbeat_timestamp_seconds", "When the worker last heartbeated (Unix time).", labels=["worker"])  # fmt: skip
        age = GaugeMetricFamily("t4dm_worker_heartbeat_age_seconds", "Seconds since the worker's last heartbeat.", labels=["worker"])  # fmt: skip
        total = GaugeMetricFamily("t4dm_worker_gpu_memory_total_bytes", "GPU memory of the worker's GPUs.", labels=["worker", "gpu"])  # fmt: skip
        free = GaugeMetricFamily("t4dm_worker_gpu_memory_free_bytes", "Free GPU memory at the last heartbeat.", labels=["worker", "gpu"])  # fmt: skip
        now = timezone.now()
        for worker in Worker.objects.all():
            up.add_metric([worker.name, worker.status], 0 if worker.status == "lost" else 1)
            last.add_metric([worker.name], worker.last_heartbeat_at.timestamp())
            age.add_metric([worker.name], max(0.0, (now - worker.last_heartbeat_at).total_seconds()))
            if worker.gpu_memory_total_mb is not None:
                total.add_metric([worker.name, worker.gpu_name], worker.gpu_memory_total_mb * 2**20)
            if worker.gpu_memory_free_mb is not None:
                free.add_metric([worker.name, worker.gpu_name], worker.gpu_memory_free_mb * 2**20)
        yield from (up, last, age, total, free)

        points = CounterMetricFamily(
            "t4dm_metric_points_ingested",
            "Training metric points stored (the last point id given out); rate() of it is the ingest rate.",
        )
        points.add_metric([], points_last_id())
        yield points


def _registry() -> CollectorRegistry:
    # The default registry holds REQUEST_LATENCY (and the process/platform collectors prometheus_client
    # registers there); the database collector is added per scrape so that importing this module never
    # touches the database.
    from prometheus_client import REGISTRY

    registry = CollectorRegistry(auto_describe=False)
    registry.register(_DefaultRegistry(REGISTRY))
    registry.register(PlatformCollector())
    return registry


class _DefaultRegistry(Collector):
    def __init__(self, registry: CollectorRegistry):
        self.registry = registry

    def collect(self):
        yield from self.registry.collect()


def _authorized(request: HttpRequest) -> int | None:
    """None when the caller may scrape; else the status to answer (401 no credentials, 403 wrong ones)."""
    from t4dm_site.roles import is_admin
    from t4dm_site.services import api_token_authenticate

    scheme, _, raw = request.headers.get("Authorization", "").partition(" ")
    raw = raw.strip()
    if scheme.lower() == "bearer" and raw:
        expected = settings.METRICS_TOKEN
        if expected and hmac.compare_digest(raw.encode(), expected.encode()):
            return None
        user = api_token_authenticate(raw=raw)
        return None if user is not None and is_admin(user) else 403
    if request.user.is_authenticated:
        return None if is_admin(request.user) else 403
    return 401


@require_GET
def metrics_view(request: HttpRequest) -> HttpResponse:
    refused = _authorized(request)
    if refused == 401:
        response = JsonResponse(
            {
                "error": {
                    "code": "unauthorized",
                    "message": "send Authorization: Bearer <T4DM_METRICS_TOKEN or an admin's API token>",
                    "details": None,
                }
            },  # fmt: skip
            status=401,
        )
        response["WWW-Authenticate"] = 'Bearer realm="t4dm-metrics"'
        return response
    if refused == 403:
        return JsonResponse(
            {
                "error": {
                    "code": "forbidden",
                    "message": "/metrics is for admins or the metrics token",
                    "details": None,
                }
            },  # fmt: skip
            status=403,
        )
    return HttpResponse(generate_latest(_registry()), content_type=CONTENT_TYPE_LATEST)


class RequestLatencyMiddleware:
    """Observes each request's duration into REQUEST_LATENCY. Works in both sync and async stacks."""

    sync_capable = True
    async_capable = True

    def __init__(self, get_response):
        self.get_response = get_response
        if iscoroutinefunction(get_response):
            markcoroutinefunction(self)

    def __call__(self, request):
        if iscoroutinefunction(self):
            return self._acall(request)
        started = time.perf_counter()
        response = self.get_response(request)
        self._observe(request, response, started)
        return response

    async def _acall(self, request):
        started = time.perf_counter()
        response = await self.get_response(request)
        self._observe(request, response, started)
        return response

    @staticmethod
    def _observe(request, response, started: float) -> None:
        match = getattr(request, "resolver_match", None)
        route = match.route if match is not None and match.route else "unmatched"
        REQUEST_LATENCY.labels(request.method, route, str(response.status_code)).observe(
            time.perf_counter() - started
        )
