"""Multi-node jobs (``nodes: M``): how the M workers of one job find each other.

A job with ``hyperparameters.nodes`` M > 1 is sent to the training queue as M Celery messages (node
0 .. M-1, the same job token). Node 0 is the leader: it claims the job (status running), picks a
rendezvous endpoint on its own machine (``T4DM_RDZV_HOST``, default this machine's FQDN, and the first
free port of ``T4DM_RDZV_PORTS``, default 29400-29499) and publishes it in the job's run record
(``POST /api/v1/worker/jobs/{id}/rendezvous``, for the running attempt only). The other nodes poll
the job's spec until it carries that endpoint. Every node then launches its local ranks with torchrun
(``torch.distributed.run``: ``--nnodes M``, ``--nproc-per-node gpus``, ``--rdzv-backend c10d``,
``--rdzv-endpoint host:port``, ``--rdzv-id`` the job id); the leader hosts the rendezvous store
(``is_host``). Global rank 0, on whichever node the rendezvous put it, reports metrics and checkpoints
as in a one-node run; the node that ran it reports the final status. A node whose run fails reports
``failed`` (the first report wins; the platform refuses a second final status). A cancel reaches every
rank through the all-reduced stop flag, on every node.

No Django here.
"""

from __future__ import annotations

import os
import socket
import time
from typing import Any

DEFAULT_PORTS = "29400-29499"
DEFAULT_JOIN_TIMEOUT = 600.0


def rendezvous_host() -> str:
    return os.environ.get("T4DM_RDZV_HOST", "").strip() or socket.getfqdn()


def rendezvous_ports() -> range:
    """``T4DM_RDZV_PORTS``: "first-last" or one port."""
    text = os.environ.get("T4DM_RDZV_PORTS", "").strip() or DEFAULT_PORTS
    first, _, last = text.partition("-")
    try:
        low, high = int(first), int(last or first)
    except ValueError as exc:
        raise ValueError(f"T4DM_RDZV_PORTS must be a port or a range like 29400-29499, got {text!r}") from exc
    if not 0 < low <= high < 65536:
        raise ValueError(f"T4DM_RDZV_PORTS must lie in 1-65535, got {text!r}")
    return range(low, high + 1)


def join_timeout() -> float:
    """Seconds a node waits for the others (the leader for the rendezvous, the others for the leader's
    endpoint): ``T4DM_RDZV_JOIN_TIMEOUT``, default 600."""
    return float(os.environ.get("T4DM_RDZV_JOIN_TIMEOUT", "").strip() or DEFAULT_JOIN_TIMEOUT)


def pick_endpoint() -> str:
    """``host:port`` for this job's rendezvous: the first port of the range free on this machine."""
    host = rendezvous_host()
    for port in rendezvous_ports():
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
            try:
                probe.bind(("", port))
            except OSError:
                continue
        return f"{host}:{port}"
    ports = rendezvous_ports()
    raise RuntimeError(f"no free rendezvous port in {ports.start}-{ports.stop - 1} (T4DM_RDZV_PORTS)")


def publish(client: Any, endpoint: str) -> dict:
    """Record the endpoint in the job's run record (the leader, once per attempt)."""
    return client._call("POST", f"/worker/jobs/{client.job_id}/rendezvous", {"endpoint": endpoint})


def wait_for_endpoint(client: Any, *, timeout: float, poll: float = 0.5) -> str:
    """The endpoint the leader published for the running attempt, read from the job's spec. Raises
    TimeoutError when none comes; the client's PlatformError (401/409) when the job was requeued or
    ended meanwhile."""
    deadline = time.monotonic() + timeout
    while True:
        endpoint = client.spec().get("rendezvous")
        if endpoint:
            return str(endpoint)
        if time.monotonic() > deadline:
            raise TimeoutError(f"no rendezvous endpoint from the job's first node within {timeout:.0f} s")
        time.sleep(poll)


def torchrun_arguments(
    *, nodes: int, processes: int, endpoint: str, run_id: str, is_host: bool, timeout: float
) -> list[str]:
    """torchrun's options for one node of an M-node job (c10d rendezvous, no restarts: a failure
    fails the job, whose requeue is the platform's business)."""
    return [
        f"--nnodes={nodes}",
        f"--nproc-per-node={processes}",
        "--rdzv-backend=c10d",
        f"--rdzv-endpoint={endpoint}",
        f"--rdzv-id={run_id}",
        f"--rdzv-conf=is_host={'true' if is_host else 'false'},join_timeout={int(timeout)}",
        "--max-restarts=0",
    ]
