"""MLflow's REST tracking API at /api/2.0/mlflow/: its own NinjaAPI, because the `mlflow` client
expects MLflow's error shape ({"error_code", "message"}). Authenticate with a T4DM API token:
`MLFLOW_TRACKING_TOKEN=t4dm_...` and `mlflow.set_tracking_uri("http://<t4dm>")`."""

from __future__ import annotations

from typing import Any, NotRequired

from django.conf import settings
from django.core.exceptions import RequestDataTooBig
from django.http import HttpRequest
from ninja import NinjaAPI, Schema
from ninja.errors import AuthenticationError, HttpError, ValidationError
from pydantic import TypeAdapter
from pydantic import ValidationError as PydanticError
from typing_extensions import TypedDict

from experiments.mlflow_compat import services
from t4dm_site.auth import trainer_auth
from t4dm_site.errors import INTERNAL_ERROR_MESSAGE, DomainError, report_unhandled

mlflow_api = NinjaAPI(
    title="T4DM MLflow-compatible tracking API",
    version="mlflow-2.0",
    urls_namespace="mlflow",
    auth=trainer_auth,
    description="MLflow's tracking REST API (experiments, runs, metrics, params, tags) on T4DM jobs.",
    docs_url="/docs",
)

_CODES = {400: "INVALID_PARAMETER_VALUE", 401: "UNAUTHENTICATED", 403: "PERMISSION_DENIED",
          404: "RESOURCE_DOES_NOT_EXIST", 409: "INVALID_STATE", 413: "INVALID_PARAMETER_VALUE"}  # fmt: skip


def _error(request, status: int, message: str, code: str | None = None):
    error_code = code if code and code.isupper() else _CODES.get(status, "INTERNAL_ERROR")
    return mlflow_api.create_response(request, {"error_code": error_code, "message": message}, status=status)


@mlflow_api.exception_handler(DomainError)
def _domain_error(request: HttpRequest, exc: DomainError):
    return _error(request, exc.status, exc.message, exc.code)


@mlflow_api.exception_handler(AuthenticationError)
def _auth_error(request: HttpRequest, exc: AuthenticationError):
    return _error(request, 401, "authentication required: set MLFLOW_TRACKING_TOKEN to a T4DM API token")


@mlflow_api.exception_handler(ValidationError)
def _validation_error(request: HttpRequest, exc: ValidationError):
    first = exc.errors[0] if exc.errors else {}
    where = ".".join(str(p) for p in first.get("loc", []) if p not in ("body", "payload", "query"))
    return _error(request, 400, f"{where}: {first.get('msg', 'invalid')}")


@mlflow_api.exception_handler(HttpError)
def _http_error(request: HttpRequest, exc: HttpError):
    return _error(request, exc.status_code, str(exc))


@mlflow_api.exception_handler(RequestDataTooBig)
def _body_too_big(request: HttpRequest, exc: RequestDataTooBig):
    """A body over Django's DATA_UPLOAD_MAX_MEMORY_SIZE: MLflow's 400 for an oversized request (a 500
    made the mlflow client retry it for minutes)."""
    limit = settings.DATA_UPLOAD_MAX_MEMORY_SIZE
    return _error(request, 400, f"Request body must be at most {limit} bytes", "INVALID_PARAMETER_VALUE")


@mlflow_api.exception_handler(Exception)
def _unhandled(request: HttpRequest, exc: Exception):
    """Anything else: MLflow's error shape, 500, without the traceback (ninja shows it under DEBUG)."""
    report_unhandled(request, exc)
    return _error(request, 500, INTERNAL_ERROR_MESSAGE, "INTERNAL_ERROR")


class KeyValue(Schema):
    key: str
    value: Any = None


class ExperimentCreateIn(Schema):
    name: str
    artifact_location: str | None = None
    tags: list[KeyValue] | None = None


class ExperimentIdIn(Schema):
    experiment_id: str


class ExperimentUpdateIn(ExperimentIdIn):
    new_name: str


class ExperimentTagIn(ExperimentIdIn):
    key: str
    value: Any = ""


class ExperimentTagDeleteIn(ExperimentIdIn):
    key: str


class RunIdIn(Schema):
    run_id: str


class RunTagDeleteIn(RunIdIn):
    key: str


class LogInputsIn(RunIdIn):
    datasets: list[dict] = []
    models: list[dict] = []


class ExperimentsSearchIn(Schema):
    max_results: int | None = 1000
    page_token: str | None = None
    filter: str | None = None
    order_by: list[str] | None = None
    view_type: Any = None


class RunCreateIn(Schema):
    experiment_id: str = services.DEFAULT_EXPERIMENT_ID
    user_id: str | None = None
    run_name: str | None = None
    start_time: int | None = None
    tags: list[KeyValue] | None = None


class RunUpdateIn(Schema):
    run_id: str | None = None
    run_uuid: str | None = None
    status: str | None = None
    end_time: int | None = None
    run_name: str | None = None


class RunsSearchIn(Schema):
    experiment_ids: list[str] = []
    filter: str | None = None
    run_view_type: Any = None
    max_results: int | None = 1000
    order_by: list[str] | None = None
    page_token: str | None = None


class MetricIn(Schema):
    key: str
    value: Any
    timestamp: int | None = None
    step: int | None = 0


class LogMetricIn(MetricIn):
    run_id: str | None = None
    run_uuid: str | None = None


class LogParamIn(Schema):
    run_id: str | None = None
    run_uuid: str | None = None
    key: str
    value: Any = ""


class LogBatchIn(Schema):
    run_id: str
    metrics: list[MetricIn] = []
    params: list[KeyValue] = []
    tags: list[KeyValue] = []


def _run(request, run_id: str | None, run_uuid: str | None = None):
    return services.run_get(user=request.auth, run_id=run_id or run_uuid or "")


# --- experiments ------------------------------------------------------------------------------------


@mlflow_api.post("/experiments/create")
def experiment_create(request, payload: ExperimentCreateIn):
    experiment = services.experiment_create(
        owner=request.auth,
        name=payload.name,
        tags=[(t.key, "" if t.value is None else t.value) for t in payload.tags or []],
    )
    return {"experiment_id": str(experiment.pk)}


@mlflow_api.get("/experiments/get")
def experiment_get(request, experiment_id: str):
    return {
        "experiment": services.experiment_object(
            services.experiment_get(user=request.auth, experiment_id=experiment_id)
        )
    }


@mlflow_api.get("/experiments/get-by-name")
def experiment_get_by_name(request, experiment_name: str):
    experiment = services.experiment_get_by_name(user=request.auth, name=experiment_name)
    return {"experiment": services.experiment_object(experiment)}


@mlflow_api.post("/experiments/search")
def experiments_search(request, payload: ExperimentsSearchIn):
    return services.experiments_search(
        user=request.auth, filter_string=payload.filter or "", max_results=payload.max_results or 1000,
        page_token=payload.page_token or "", order_by=payload.order_by, view_type=payload.view_type,
    )  # fmt: skip


@mlflow_api.get("/experiments/search")
def experiments_search_get(request, filter: str = "", max_results: int = 1000, page_token: str = ""):
    return services.experiments_search(
        user=request.auth, filter_string=filter, max_results=max_results, page_token=page_token
    )


def _experiment(request, experiment_id: str):
    return services.experiment_get(user=request.auth, experiment_id=experiment_id)


@mlflow_api.post("/experiments/delete")
def experiment_delete(request, payload: ExperimentIdIn):
    services.experiment_set_lifecycle(
        experiment=_experiment(request, payload.experiment_id), stage=services.DELETED
    )
    return {}


@mlflow_api.post("/experiments/restore")
def experiment_restore(request, payload: ExperimentIdIn):
    services.experiment_set_lifecycle(
        experiment=_experiment(request, payload.experiment_id), stage=services.ACTIVE
    )
    return {}


@mlflow_api.post("/experiments/update")
def experiment_update(request, payload: ExperimentUpdateIn):
    services.experiment_rename(
        experiment=_experiment(request, payload.experiment_id), new_name=payload.new_name
    )
    return {}


@mlflow_api.post("/experiments/set-experiment-tag")
def experiment_tag_set(request, payload: ExperimentTagIn):
    services.experiment_tag_set(
        experiment=_experiment(request, payload.experiment_id), key=payload.key, value=payload.value
    )
    return {}


@mlflow_api.post("/experiments/delete-experiment-tag")
def experiment_tag_delete(request, payload: ExperimentTagDeleteIn):
    services.experiment_tag_delete(experiment=_experiment(request, payload.experiment_id), key=payload.key)
    return {}


# --- runs -------------------------------------------------------------------------------------------


@mlflow_api.post("/runs/create")
def run_create(request, payload: RunCreateIn):
    experiment = services.experiment_get(user=request.auth, experiment_id=payload.experiment_id)
    run = services.run_create(
        owner=request.auth,
        experiment=experiment,
        run_name=payload.run_name or "",
        start_time=payload.start_time,
        tags={t.key: "" if t.value is None else str(t.value) for t in payload.tags or []},
    )
    return {"run": services.run_object(run)}


@mlflow_api.post("/runs/update")
def run_update(request, payload: RunUpdateIn):
    run = services.run_update(
        run=_run(request, payload.run_id, payload.run_uuid),
        status=payload.status,
        end_time=payload.end_time,
        run_name=payload.run_name,
    )
    return {"run_info": services.run_object(run)["info"]}


@mlflow_api.get("/runs/get")
def run_get(request, run_id: str | None = None, run_uuid: str | None = None):
    return {"run": services.run_object(_run(request, run_id, run_uuid))}


@mlflow_api.post("/runs/delete")
def run_delete(request, payload: RunIdIn):
    services.run_set_lifecycle(run=_run(request, payload.run_id), stage=services.DELETED)
    return {}


@mlflow_api.post("/runs/restore")
def run_restore(request, payload: RunIdIn):
    services.run_set_lifecycle(run=_run(request, payload.run_id), stage=services.ACTIVE)
    return {}


@mlflow_api.post("/runs/delete-tag")
def run_tag_delete(request, payload: RunTagDeleteIn):
    services.run_tag_delete(run=_run(request, payload.run_id), key=payload.key)
    return {}


@mlflow_api.post("/runs/log-inputs")
def log_inputs(request, payload: LogInputsIn):
    services.run_log_inputs(
        run=_run_to_log(request, payload.run_id), datasets=payload.datasets, models=payload.models
    )
    return {}


@mlflow_api.post("/runs/search")
def runs_search(request, payload: RunsSearchIn):
    return services.runs_search(
        user=request.auth,
        experiment_ids=payload.experiment_ids,
        filter_string=payload.filter or "",
        max_results=payload.max_results or 1000,
        page_token=payload.page_token or "",
        order_by=payload.order_by,
        run_view_type=payload.run_view_type,
    )


def _run_to_log(request, run_id: str | None, run_uuid: str | None = None):
    return services.run_get_for_logging(user=request.auth, run_id=run_id or run_uuid or "")


# The logging endpoints read their JSON body with pydantic-core straight into dicts: a ninja Schema
# builds an object per metric and converts it back (about 25 ms of a 1,000-metric batch, more than
# storing it). The OpenAPI document still shows the Schema classes above.


class _MetricBody(TypedDict):
    key: str
    value: Any
    timestamp: NotRequired[int | None]
    step: NotRequired[int | None]


class _KeyValueBody(TypedDict):
    key: str
    value: NotRequired[Any]


class _LogBatchBody(TypedDict):
    run_id: str
    metrics: NotRequired[list[_MetricBody]]
    params: NotRequired[list[_KeyValueBody]]
    tags: NotRequired[list[_KeyValueBody]]


class _LogMetricBody(_MetricBody):
    run_id: NotRequired[str | None]
    run_uuid: NotRequired[str | None]


_LOG_BATCH = TypeAdapter(_LogBatchBody)
_LOG_METRIC = TypeAdapter(_LogMetricBody)


def _parse(adapter: TypeAdapter, body: bytes) -> dict:
    """The body as the adapter's dict, or ninja's ValidationError (MLflow's 400) naming the field."""
    try:
        return adapter.validate_json(body or b"{}")
    except PydanticError as exc:
        errors = exc.errors(include_url=False, include_context=False, include_input=False)
        raise ValidationError([{**e, "loc": ("body", "payload", *e["loc"])} for e in errors]) from None


def _body_schema(schema: type[Schema]) -> dict:
    """An operation's requestBody from a Schema, its `$defs` inlined."""
    tree = schema.model_json_schema()
    defs = tree.pop("$defs", {})

    def walk(node):
        if isinstance(node, dict):
            if "$ref" in node:
                return walk(defs[node["$ref"].rsplit("/", 1)[-1]])
            return {key: walk(value) for key, value in node.items()}
        return [walk(item) for item in node] if isinstance(node, list) else node

    return {"requestBody": {"required": True, "content": {"application/json": {"schema": walk(tree)}}}}


@mlflow_api.post("/runs/log-metric", openapi_extra=_body_schema(LogMetricIn))
def log_metric(request):
    payload = _parse(_LOG_METRIC, request.body)
    run = _run_to_log(request, payload.get("run_id"), payload.get("run_uuid"))
    services.run_log_batch(run=run, metrics=[payload])
    return {}


@mlflow_api.post("/runs/log-parameter")
def log_parameter(request, payload: LogParamIn):
    services.run_log_batch(
        run=_run_to_log(request, payload.run_id, payload.run_uuid),
        params=[{"key": payload.key, "value": payload.value}],
    )
    return {}


@mlflow_api.post("/runs/set-tag")
def set_tag(request, payload: LogParamIn):
    services.run_log_batch(
        run=_run_to_log(request, payload.run_id, payload.run_uuid),
        tags=[{"key": payload.key, "value": payload.value}],
    )
    return {}


@mlflow_api.post("/runs/log-batch", openapi_extra=_body_schema(LogBatchIn))
def log_batch(request):
    payload = _parse(_LOG_BATCH, request.body)
    services.run_log_batch(
        run=_run_to_log(request, payload["run_id"]),
        metrics=payload.get("metrics", ()),
        params=payload.get("params", ()),
        tags=payload.get("tags", ()),
    )
    return {}


@mlflow_api.get("/metrics/get-history")
def metric_history(
    request, metric_key: str, run_id: str | None = None, run_uuid: str | None = None,
    max_results: int | None = None, page_token: str = "",
):  # fmt: skip
    return services.metric_history(
        run=_run(request, run_id, run_uuid), key=metric_key, max_results=max_results, page_token=page_token
    )
