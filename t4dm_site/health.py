"""GET /health: is this web process able to serve? For load balancers, orchestrators and uptime checks.

Checks the database (a query), the Celery broker (a connection) and the channel layer (a message sent to
a fresh channel and received back). 200 `{"status": "ok", "checks": {...}}` when all pass; 503 naming
what failed otherwise. No authentication, and no detail beyond the error's type (a broker URL in an
error message could carry a password).
"""

from __future__ import annotations

import asyncio
import time

from asgiref.sync import async_to_sync
from django.db import connection
from django.http import HttpRequest, JsonResponse
from django.views.decorators.http import require_GET

TIMEOUT_SECONDS = 3.0


def _database() -> None:
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1")
        cursor.fetchone()


def _broker() -> None:
    from t4dm_site.celery import app

    with app.connection_for_write(connect_timeout=TIMEOUT_SECONDS) as conn:
        conn.ensure_connection(max_retries=1, interval_start=0, interval_step=0, timeout=TIMEOUT_SECONDS)


def _channel_layer() -> None:
    from channels.layers import get_channel_layer

    layer = get_channel_layer()
    if layer is None:
        raise RuntimeError("no channel layer configured")

    async def round_trip():
        channel = await layer.new_channel("health.")
        await layer.send(channel, {"type": "health.check"})
        message = await layer.receive(channel)
        if message.get("type") != "health.check":
            raise RuntimeError("the channel layer returned another message")

    async def bounded():
        await asyncio.wait_for(round_trip(), TIMEOUT_SECONDS)

    async_to_sync(bounded)()


CHECKS = {"database": _database, "broker": _broker, "channel_layer": _channel_layer}


def health_check() -> dict:
    """Run every check; {"status", "checks": {name: {"ok", "ms", "error"?}}, "failed": [names]}."""
    results, failed = {}, []
    for name, check in CHECKS.items():
        started = time.perf_counter()
        try:
            check()
            results[name] = {"ok": True}
        except Exception as exc:  # any failure of a dependency is what we report
            results[name] = {"ok": False, "error": type(exc).__name__}
            failed.append(name)
        results[name]["ms"] = round((time.perf_counter() - started) * 1000, 1)
    return {"status": "unavailable" if failed else "ok", "failed": failed, "checks": results}


@require_GET
def health_view(request: HttpRequest) -> JsonResponse:
    report = health_check()
    return JsonResponse(report, status=503 if report["failed"] else 200)
