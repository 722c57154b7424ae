"""Endpoints for workers and the ingest batch endpoint.

Workers authenticate with their job's token and can only report for that job, for its running attempt
(a requeue issues a new token; the end of the job retires it), and only about folders inside that job's
own folder. The ingest endpoint
also takes a researcher's API token or session (the SDK logging to their own job).
"""

from __future__ import annotations

import os

from ninja import Router

from experiments import services
from experiments.ingest import metric_points_ingest_body
from experiments.jobs import job_rendezvous_publish
from experiments.models import TrainingJob
from experiments.schemas import (
    CheckpointIn,
    EventIn,
    IngestOut,
    PointsIn,
    ProgressIn,
    RefuseIn,
    RendezvousIn,
    StatusIn,
    WorkerAckOut,
    WorkerHeartbeatIn,
)
from t4dm_site.access import get_visible
from t4dm_site.auth import JobTokenAuth, job_token_pk, trainer_auth, worker_secret_auth
from t4dm_site.errors import Conflict, Forbidden, InvalidInput, NotFound
from t4dm_site.public_ids import parse_public_id

router = Router(tags=["workers and ingest"])


class AttemptTokenAuth(JobTokenAuth):
    """The job token of the job's running attempt (t4dm_site.auth.JobTokenAuth). A token whose attempt
    is over — superseded by a requeue (the worker was declared lost, or refused the job) or ended with
    the job — gets 409, so a worker knows it was fenced off rather than misconfigured; any other token
    is a plain 401."""

    def authenticate(self, request, token):
        pk = super().authenticate(request, token)
        named = job_token_pk(token)
        if pk is not None or named is None:
            return pk
        job = TrainingJob.objects.filter(pk=named).only("status", "attempt", "retired_token_hashes").first()
        if job is None or not job.token_retired(token):
            return None
        if job.is_terminal:
            raise Conflict(
                f"{job.public_id} is {job.status}: its worker token ended with it", code="job_finished"
            )
        raise Conflict(
            f"this token belongs to a superseded attempt of {job.public_id} (attempt {job.attempt} runs now); "
            "nothing from it is stored",
            code="attempt_superseded",
        )


job_token_auth = AttemptTokenAuth()


def _job_for_token(request, job_id: str) -> TrainingJob:
    pk = parse_public_id("job", job_id)
    if request.auth != pk:
        raise Forbidden(f"this worker token is not valid for {job_id}", code="wrong_job_token")
    job = TrainingJob.objects.filter(pk=pk).first()
    if job is None:
        raise NotFound(f"job {job_id} does not exist")
    return job


def _job_pk_for_ingest(request, job_id: str) -> int:
    if isinstance(request.auth, int):  # a job token: its job is locked (or found missing) by the ingest
        pk = parse_public_id("job", job_id)
        if request.auth != pk:
            raise Forbidden(f"this worker token is not valid for {job_id}", code="wrong_job_token")
        return pk
    # A user token: the same sharing rule and 404 as job_get, reading only the id (no job row).
    return get_visible(TrainingJob.objects.only("pk"), request.auth, job_id, "job", prefix="job").pk


def _inline_refs(schema: dict) -> dict:
    """A pydantic JSON schema with its `$defs` inlined, to sit in an operation's requestBody."""
    defs = schema.pop("$defs", {})

    def walk(node):
        if isinstance(node, dict):
            if "$ref" in node:
                return walk(defs[node["$ref"].rsplit("/", 1)[-1]])
            return {key: walk(value) for key, value in node.items()}
        if isinstance(node, list):
            return [walk(item) for item in node]
        return node

    return walk(schema)


# The endpoint reads the raw body (PostgreSQL parses it: experiments/ingest.py), so its schema is
# declared here rather than by a `payload` parameter; a bad body still gets the same 422.
_POINTS_BODY = {
    "requestBody": {
        "required": True,
        "content": {"application/json": {"schema": _inline_refs(PointsIn.model_json_schema())}},
    }
}


def _job_folder_path(job: TrainingJob, path: str, field: str) -> str:
    """A folder a worker reports (a checkpoint, the final model) must lie inside its own job's folder
    once symlinks and `..` are resolved: the server later reads it (export, evaluation, resume, the
    playground), so another job's folder, `/etc` or `../..` from a worker token is refused and nothing
    is stored. Returns the resolved path."""
    if not path:
        return path
    folder = os.path.realpath(job.output_dir) if job.output_dir else ""
    real = os.path.realpath(path) if os.path.isabs(path) and "\x00" not in path else ""
    if not folder or not real or real == folder or os.path.commonpath([folder, real]) != folder:
        raise InvalidInput(
            f"{field} {path!r} is not inside this job's folder {job.output_dir}",
            code="path_outside_job_folder",
        )
    return real


def _ack(job: TrainingJob) -> dict:
    return {"status": job.status, "cancel_requested": job.cancel_requested}


@router.post(
    "/ingest/jobs/{job_id}/metrics",
    response=IngestOut,
    auth=[job_token_auth, trainer_auth],
    openapi_extra=_POINTS_BODY,
)
def metrics_ingest(request, job_id: str):
    result = metric_points_ingest_body(job_pk=_job_pk_for_ingest(request, job_id), body=request.body)
    return {"created": result.created, "duplicates": result.duplicates}


@router.get("/worker/jobs/{job_id}/spec", auth=job_token_auth)
def worker_spec(request, job_id: str):
    return services.job_spec_for_worker(job=_job_for_token(request, job_id))


@router.post("/worker/jobs/{job_id}/status", response=WorkerAckOut, auth=job_token_auth)
def worker_status(request, job_id: str, payload: StatusIn):
    job = _job_for_token(request, job_id)
    job = services.job_report_status(
        job=job,
        status=payload.status,
        worker=payload.worker,
        error=payload.error,
        final_model_path=_job_folder_path(job, payload.final_model_path, "final_model_path"),
        result=payload.result,
    )
    return _ack(job)


@router.post("/worker/jobs/{job_id}/progress", response=WorkerAckOut, auth=job_token_auth)
def worker_progress(request, job_id: str, payload: ProgressIn):
    job = services.job_report_progress(
        job=_job_for_token(request, job_id),
        step=payload.step,
        total_steps=payload.total_steps,
        epoch=payload.epoch,
    )
    return _ack(job)


@router.post("/worker/jobs/{job_id}/checkpoints", response={201: dict}, auth=job_token_auth)
def worker_checkpoint(request, job_id: str, payload: CheckpointIn):
    job = _job_for_token(request, job_id)
    checkpoint = services.checkpoint_record(
        job=job,
        step=payload.step,
        path=_job_folder_path(job, payload.path, "path"),
        metrics=payload.metrics,
    )
    return 201, {"step": checkpoint.step, "path": checkpoint.path}


@router.post("/worker/jobs/{job_id}/refuse", response=dict, auth=job_token_auth)
def worker_refuse(request, job_id: str, payload: RefuseIn):
    return services.job_refuse(
        job=_job_for_token(request, job_id), worker=payload.worker, reason=payload.reason
    )


@router.post("/worker/jobs/{job_id}/rendezvous", response=dict, auth=job_token_auth)
def worker_rendezvous(request, job_id: str, payload: RendezvousIn):
    # A multi-node job's first node publishes where the others meet it; they read it in the spec.
    return job_rendezvous_publish(job=_job_for_token(request, job_id), endpoint=payload.endpoint)


@router.post("/worker/jobs/{job_id}/events", response={201: dict}, auth=job_token_auth)
def worker_event(request, job_id: str, payload: EventIn):
    services.job_event_add(job=_job_for_token(request, job_id), message=payload.message, level=payload.level)
    return 201, {"ok": True}


@router.post("/worker/heartbeat", response=dict, auth=worker_secret_auth)
def worker_heartbeat(request, payload: WorkerHeartbeatIn):
    worker = services.worker_heartbeat(**payload.dict())
    return {"name": worker.name, "status": worker.status}
