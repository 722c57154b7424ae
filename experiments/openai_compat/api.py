"""The OpenAI-compatible fine-tuning API at /v1/: its own NinjaAPI, because the `openai` package
expects OpenAI's error objects ({"error": {"message", "type", "param", "code"}}), not ours.

Authenticate with a T4DM API token as the API key: `OpenAI(base_url=".../v1", api_key="t4dm_...")`.
"""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.core.exceptions import RequestDataTooBig
from django.http import HttpRequest
from django.urls import re_path
from django.views.decorators.csrf import csrf_exempt
from ninja import File, Form, NinjaAPI, Schema
from ninja.errors import AuthenticationError, HttpError, ValidationError
from ninja.files import UploadedFile

from experiments.openai_compat import services
from t4dm_site.auth import trainer_auth
from t4dm_site.errors import INTERNAL_ERROR_MESSAGE, DomainError, report_unhandled


class _OpenAINinjaAPI(NinjaAPI):
    """Its URLs end with a catch-all: a /v1 path it does not serve (OpenAI's pause/resume, batches, …) is a
    404 in OpenAI's error shape, not the site's HTML page (which the `openai` client cannot read). Not an
    operation: it is in no schema."""

    def _get_urls(self):
        return [*super()._get_urls(), re_path(r"^.*$", _no_such_endpoint)]


openai_api = _OpenAINinjaAPI(
    title="T4DM OpenAI-compatible fine-tuning API",
    version="openai-1",
    urls_namespace="openai-v1",
    auth=trainer_auth,
    description="`/v1/files` and `/v1/fine_tuning/jobs` as the `openai` package expects, trained locally.",
    docs_url="/docs",
)

ERROR_TYPES = {400: "invalid_request_error", 401: "invalid_request_error", 403: "permission_error",
               404: "invalid_request_error", 409: "invalid_request_error", 413: "invalid_request_error",
               422: "invalid_request_error"}  # fmt: skip


def _error(request, status: int, message: str, *, code: str | None = None, param: str | None = None):
    body = {
        "error": {
            "message": message,
            "type": ERROR_TYPES.get(status, "api_error"),
            "param": param,
            "code": code,
        }
    }
    response = openai_api.create_response(request, body, status=status)
    if status == 409:
        # The `openai` client retries a 409 (a lock conflict to it); ours (a finished job) do not change.
        response["x-should-retry"] = "false"
    return response


@openai_api.exception_handler(DomainError)
def _domain_error(request: HttpRequest, exc: DomainError):
    param = exc.details.get("param") if isinstance(exc.details, dict) else None
    return _error(request, exc.status, services.error_message(exc), code=exc.code, param=param)


@openai_api.exception_handler(AuthenticationError)
def _auth_error(request: HttpRequest, exc: AuthenticationError):
    return _error(
        request, 401, "Incorrect API key provided: use a T4DM API token (t4dm_...) as the API key.",
        code="invalid_api_key",
    )  # fmt: skip


@openai_api.exception_handler(ValidationError)
def _validation_error(request: HttpRequest, exc: ValidationError):
    first = exc.errors[0] if exc.errors else {}
    where = ".".join(str(p) for p in first.get("loc", []) if p not in ("body", "payload", "form", "query"))
    return _error(
        request, 400, f"{where}: {first.get('msg', 'invalid')}", code="invalid_value", param=where or None
    )


@openai_api.exception_handler(HttpError)
def _http_error(request: HttpRequest, exc: HttpError):
    return _error(request, exc.status_code, str(exc))


@openai_api.exception_handler(RequestDataTooBig)
def _body_too_big(request: HttpRequest, exc: RequestDataTooBig):
    """A body (or a form field beside the file) over Django's DATA_UPLOAD_MAX_MEMORY_SIZE: 413, not a 500
    (which the `openai` client would send twice more)."""
    limit = settings.DATA_UPLOAD_MAX_MEMORY_SIZE
    return _error(request, 413, f"the request body must be at most {limit} bytes", code="request_too_large")


@openai_api.exception_handler(Exception)
def _unhandled(request: HttpRequest, exc: Exception):
    """Anything else: OpenAI's error object, 500, without the traceback (ninja shows it under DEBUG)."""
    report_unhandled(request, exc)
    return _error(request, 500, INTERNAL_ERROR_MESSAGE, code="internal_error")


@csrf_exempt
def _no_such_endpoint(request: HttpRequest, *args, **kwargs):
    return _error(
        request, 404, f"Invalid URL ({request.method} {request.path}): T4DM does not serve this endpoint",
        code="unknown_url",
    )  # fmt: skip


# --- files ------------------------------------------------------------------------------------------


@openai_api.post("/files", tags=["files"])
def file_create(request, file: UploadedFile = File(...), purpose: str = Form(...)):
    f = services.file_upload(owner=request.auth, filename=file.name, content=file, purpose=purpose)
    return services.file_object(f)


@openai_api.get("/files", tags=["files"])
def file_list(
    request, purpose: str | None = None, after: str | None = None, limit: int = 100, order: str = "desc"
):
    objects = services.files_listed(user=request.auth, purpose=purpose, order=order)
    return services.page(objects, after=after, limit=limit)


@openai_api.get("/files/{file_id}", tags=["files"])
def file_retrieve(request, file_id: str):
    return services.file_object(services.file_get(user=request.auth, file_id=file_id))


@openai_api.delete("/files/{file_id}", tags=["files"])
def file_delete(request, file_id: str):
    return services.file_delete(f=services.file_get(user=request.auth, file_id=file_id))


@openai_api.get("/files/{file_id}/content", tags=["files"])
def file_content(request, file_id: str):
    from django.http import FileResponse, HttpResponse

    content = services.file_content(services.file_get(user=request.auth, file_id=file_id))
    if isinstance(content, bytes):
        return HttpResponse(content, content_type="application/octet-stream")
    return FileResponse(content, content_type="application/octet-stream")


# --- fine-tuning jobs -------------------------------------------------------------------------------


class HyperparametersIn(Schema):
    n_epochs: Any = "auto"
    batch_size: Any = "auto"
    learning_rate_multiplier: Any = "auto"


class SupervisedIn(Schema):
    hyperparameters: HyperparametersIn | None = None


class MethodIn(Schema):
    type: str = "supervised"
    supervised: SupervisedIn | None = None


class JobCreateIn(Schema):
    model: str
    training_file: str
    validation_file: str | None = None
    hyperparameters: HyperparametersIn | None = None
    method: MethodIn | None = None
    suffix: str | None = None
    seed: int | None = None
    metadata: dict[str, Any] | None = None
    integrations: list[Any] | None = None


@openai_api.post("/fine_tuning/jobs", tags=["fine-tuning"])
def job_create(request, payload: JobCreateIn):
    method, top_level = payload.method, payload.hyperparameters
    supervised = method.supervised.hyperparameters if method and method.supervised else None
    ftjob = services.job_create(
        owner=request.auth,
        model=payload.model,
        training_file=payload.training_file,
        validation_file=payload.validation_file,
        hyperparameters=services.requested_hyperparameters(
            method_type=method.type if method else None,
            top_level=top_level.model_dump(exclude_unset=True) if top_level else None,
            supervised=supervised.model_dump(exclude_unset=True) if supervised else None,
        ),
        suffix=payload.suffix,
        seed=payload.seed,
        metadata=payload.metadata,
        integrations=payload.integrations,
    )
    return services.job_object(ftjob)


@openai_api.get("/fine_tuning/jobs", tags=["fine-tuning"])
def job_list(request, after: str | None = None, limit: int = 20):
    # `metadata[k]=v` (or `metadata=null`) in the query filters, as OpenAI's
    metadata = services.metadata_filter(request.GET)
    objects = services.jobs_listed(user=request.auth, metadata=metadata)
    return services.page(objects, after=after, limit=limit)


@openai_api.get("/fine_tuning/jobs/{fine_tuning_job_id}", tags=["fine-tuning"])
def job_retrieve(request, fine_tuning_job_id: str):
    return services.job_object(services.job_get(user=request.auth, ftjob_id=fine_tuning_job_id))


@openai_api.post("/fine_tuning/jobs/{fine_tuning_job_id}/cancel", tags=["fine-tuning"])
def job_cancel(request, fine_tuning_job_id: str):
    ftjob = services.job_get(user=request.auth, ftjob_id=fine_tuning_job_id)
    return services.job_object(services.job_cancel(ftjob=ftjob))


@openai_api.get("/fine_tuning/jobs/{fine_tuning_job_id}/events", tags=["fine-tuning"])
def job_events(request, fine_tuning_job_id: str, after: str | None = None, limit: int = 20):
    ftjob = services.job_get(user=request.auth, ftjob_id=fine_tuning_job_id)
    return services.page(services.job_events(ftjob), after=after, limit=limit)


@openai_api.get("/fine_tuning/jobs/{fine_tuning_job_id}/checkpoints", tags=["fine-tuning"])
def job_checkpoints(request, fine_tuning_job_id: str, after: str | None = None, limit: int = 10):
    ftjob = services.job_get(user=request.auth, ftjob_id=fine_tuning_job_id)
    return services.page(services.job_checkpoints(ftjob), after=after, limit=limit)
