"""The API root: /api/v1/, one router per app, one error shape, OpenAPI docs at /api/v1/docs."""

from __future__ import annotations

from django.http import HttpRequest
from ninja import NinjaAPI
from ninja.errors import AuthenticationError, HttpError, ValidationError

from t4dm_site.auth import any_user_auth
from t4dm_site.errors import INTERNAL_ERROR_MESSAGE, DomainError, report_unhandled

api = NinjaAPI(
    title="T4DM Fine-Tune API",
    version="1",
    urls_namespace="api-v1",
    auth=any_user_auth,
    description="Datasets, training configs and jobs, live metrics. Authenticate with `Authorization: Bearer <token>`.",
)


def error_body(code: str, message: str, details=None) -> dict:
    return {"error": {"code": code, "message": message, "details": details}}


@api.exception_handler(DomainError)
def _domain_error(request: HttpRequest, exc: DomainError):
    return api.create_response(request, error_body(exc.code, exc.message, exc.details), status=exc.status)


@api.exception_handler(AuthenticationError)
def _auth_error(request: HttpRequest, exc: AuthenticationError):
    return api.create_response(
        request,
        error_body("unauthorized", "authentication required: send 'Authorization: Bearer <token>' or log in"),
        status=401,
    )


@api.exception_handler(ValidationError)
def _validation_error(request: HttpRequest, exc: ValidationError):
    first = exc.errors[0] if exc.errors else {}
    where = ".".join(str(part) for part in first.get("loc", []) if part not in ("body", "payload"))
    message = f"{where}: {first.get('msg', 'invalid')}" if where else first.get("msg", "invalid request")
    return api.create_response(request, error_body("validation_error", message, exc.errors), status=422)


@api.exception_handler(HttpError)
def _http_error(request: HttpRequest, exc: HttpError):
    return api.create_response(request, error_body("http_error", str(exc)), status=exc.status_code)


@api.exception_handler(Exception)
def _unhandled(request: HttpRequest, exc: Exception):
    """Anything else: a JSON 500 without the traceback (ninja's default shows it when DEBUG is on)."""
    report_unhandled(request, exc)
    return api.create_response(request, error_body("internal_error", INTERNAL_ERROR_MESSAGE), status=500)


def _mount_routers() -> None:
    from datasets_app.api import router as datasets_router
    from experiments.api import router as experiments_router
    from experiments.evaluation.api import router as evaluation_router
    from experiments.human_eval.api import router as human_eval_router
    from experiments.integrations.api import router as integrations_router
    from experiments.providers.api import router as providers_router
    from experiments.worker_api import router as worker_router
    from experiments.workflows.api import router as workflows_router
    from models_registry.api import router as registry_router

    api.add_router("/datasets", datasets_router)
    api.add_router("/", experiments_router)
    api.add_router("/", worker_router)
    api.add_router("/", evaluation_router)
    api.add_router("/models", registry_router)
    api.add_router("/finetune", providers_router)
    api.add_router("/human-eval", human_eval_router)
    api.add_router("/", integrations_router)
    api.add_router("/workflows", workflows_router)


_mount_routers()
