"""The serving task's body on a worker: hand the request to this process's engine and send its events
back to the web side over HTTP (the worker needs no database and no channel layer).

Events are posted to `<T4DM_SERVER_URL>/v1/serving/events/` with the request's signed reply token; the
web process that receives them passes them on to the waiting request through the channel layer. The
first event goes out at once (time to first token); while a post is under way the next tokens gather
and go in the following one. A 410 answer means the client went away: the request is cancelled and
its row leaves the batch at the next token.
"""

from __future__ import annotations

import logging
import queue
import threading
import time

import httpx
from django.conf import settings

from models_registry.serving.engine import Engine, engine

logger = logging.getLogger(__name__)

_local = threading.local()


def _client() -> httpx.Client:
    client = getattr(_local, "client", None)
    if client is None:
        client = _local.client = httpx.Client(timeout=30)
    return client


def _engine() -> Engine:
    return engine(
        lambda: Engine(
            max_batch=settings.SERVING_MAX_BATCH,
            idle_s=settings.SERVING_IDLE_S,
            backend=settings.SERVING_BACKEND,
            torch_threads=settings.SERVING_TORCH_THREADS,
        )
    )


def _post(url: str, body: dict) -> int:
    """Post with a short retry on connection errors; the status code (0 when it never got through)."""
    for attempt in range(4):
        try:
            return _client().post(url, json=body).status_code
        except httpx.HTTPError as exc:
            logger.warning("serving: posting events failed (%s); retrying", exc)
            time.sleep(0.2 * 2**attempt)
    return 0


def serve(spec: dict, reply: str) -> str:
    """Generate for `spec`, posting events with the reply token until the request is done."""
    url = settings.SERVER_URL.rstrip("/") + "/v1/serving/events/"
    request = _engine().submit(spec)
    deadline_s = settings.SERVING_TIMEOUT_S
    while True:
        try:
            events = [request.events.get(timeout=deadline_s)]
        except queue.Empty:
            request.cancelled.set()
            return "timed out"
        while True:
            try:
                events.append(request.events.get_nowait())
            except queue.Empty:
                break
        status = _post(url, {"reply": reply, "events": events})
        if events[-1]["type"] in ("done", "error"):
            return events[-1]["type"]
        if status != 204:  # 410: the client left; 403: a bad token; 0: the server is away
            request.cancelled.set()
            return f"stopped ({status})"
