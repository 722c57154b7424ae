"""T4DM settings: everything comes from the environment, with embedded defaults that need none.

Embedded default (no variables): SQLite file, kombu filesystem broker, in-memory channel layer,
artifacts in a local folder, all under T4DM_DATA_DIR (./var). Production: set T4DM_PRODUCTION=1 plus
DJANGO_SECRET_KEY, DATABASE_URL=postgres://..., CELERY_BROKER_URL=redis://... and
CHANNEL_LAYER_URL=redis://... . docs/configuration.md has the full table.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets
from pathlib import Path

import dj_database_url
from django.core.exceptions import ImproperlyConfigured

from t4dm_site.env import env_bool, env_float, env_int, env_str, env_url
from t4dm_site.finetune_config import load_for_settings as load_finetune_config

BASE_DIR = Path(__file__).resolve().parent.parent

PRODUCTION = env_bool("T4DM_PRODUCTION", False)
DATA_DIR = Path(env_str("T4DM_DATA_DIR") or BASE_DIR / "var").resolve()
ARTIFACT_ROOT = Path(env_str("T4DM_ARTIFACT_ROOT") or DATA_DIR / "artifacts").resolve()
TINY_MODEL_DIR = Path(env_str("T4DM_TINY_MODEL_DIR") or DATA_DIR / "models" / "t4dm-tiny").resolve()
# The URL that Celery workers use to report metrics and status back (they never touch the database).
SERVER_URL = env_url("T4DM_SERVER_URL", schemes=("http", "https"), default="http://127.0.0.1:8000")

# Data files are private to the service user: the SQLite database, broker messages (they carry job
# tokens), dataset files, artifacts and the secret key are created 0600 and folders 0700 by every
# process that loads these settings (manage.py, t4dm_up, daphne, Celery workers). T4DM_UMASK overrides
# it (e.g. 027 where GPU workers of another user share the artifact storage through a group).
UMASK = int(env_str("T4DM_UMASK") or "077", 8)
os.umask(UMASK)


def _secret_key() -> str:
    key = env_str("DJANGO_SECRET_KEY")
    if key:
        return key
    if PRODUCTION:
        raise ImproperlyConfigured("DJANGO_SECRET_KEY is required when T4DM_PRODUCTION=1")
    # Embedded default: generate once and keep it, so sessions survive a restart.
    key_file = DATA_DIR / "secret_key"
    if not key_file.exists():
        key_file.parent.mkdir(parents=True, exist_ok=True)
        try:  # created 0600 from the start; another process starting at once may have made it
            descriptor = os.open(key_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            pass
        else:
            with os.fdopen(descriptor, "w") as out:
                out.write(secrets.token_urlsafe(50))
    return key_file.read_text().strip()


SECRET_KEY = _secret_key()
# Off unless asked for (DJANGO_DEBUG=1): a debug page would show tracebacks and settings to any user.
DEBUG = env_bool("DJANGO_DEBUG", False)
ALLOWED_HOSTS = [
    h.strip() for h in (env_str("T4DM_ALLOWED_HOSTS") or "127.0.0.1,localhost,[::1]").split(",") if h.strip()
]
CSRF_TRUSTED_ORIGINS = [
    o.strip() for o in (env_str("T4DM_CSRF_TRUSTED_ORIGINS") or "").split(",") if o.strip()
]

# --- transport security ---------------------------------------------------------------------------
# Production mode assumes HTTPS (a TLS-terminating proxy in front): secure cookies, HSTS, redirect to
# https (`manage.py check --deploy` is clean). T4DM_HTTPS=0 serves plain http (e.g. a private network);
# the embedded default is plain http on localhost.
HTTPS = env_bool("T4DM_HTTPS", PRODUCTION)
SESSION_COOKIE_SECURE = CSRF_COOKIE_SECURE = HTTPS
SESSION_COOKIE_HTTPONLY = True
SECURE_SSL_REDIRECT = HTTPS and env_bool("T4DM_SSL_REDIRECT", True)
# Workers may report over the internal network by plain http (T4DM_SERVER_URL): never redirect a POST.
SECURE_REDIRECT_EXEMPT = [r"^api/v1/worker/", r"^api/v1/ingest/"]
SECURE_HSTS_SECONDS = env_int("T4DM_HSTS_SECONDS", 31_536_000, minimum=0) if HTTPS else 0
SECURE_HSTS_INCLUDE_SUBDOMAINS = env_bool("T4DM_HSTS_INCLUDE_SUBDOMAINS", True)
SECURE_HSTS_PRELOAD = env_bool("T4DM_HSTS_PRELOAD", True)
if env_bool("T4DM_TRUST_X_FORWARDED_PROTO", HTTPS):
    # Behind the proxy that terminates TLS and sets X-Forwarded-Proto (it must strip a client's own).
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
SECURE_CONTENT_TYPE_NOSNIFF = True
SECURE_REFERRER_POLICY = "same-origin"
X_FRAME_OPTIONS = "DENY"
# Request limits: a body larger than this is refused with 413 before it is parsed (0 = no limit).
MAX_UPLOAD_BYTES = env_int("T4DM_MAX_UPLOAD_BYTES", 1024 * 1024 * 1024, minimum=0)
# A body-carrying request with no credential at all that is multipart or larger than this: 401 before
# its body is read (t4dm_site/asgi_limits.py).
ANONYMOUS_BODY_BYTES = env_int("T4DM_ANONYMOUS_BODY_BYTES", 1024 * 1024, minimum=0)
# Dataset rows as decoded in memory (Parquet dictionaries expanded, JSON parsed): past this, 400.
DATASET_MAX_DECODED_BYTES = env_int("T4DM_MAX_DECODED_BYTES", 256 * 1024 * 1024, minimum=1)
# Failed logins per (username, client address) before that pair is locked out for a window (django-axes),
# and refused bearer tokens per client address / token prefix per window before the refused ones get 429
# (t4dm_site/ratelimit.py). Valid credentials are never refused by the token limit.
LOGIN_RATE_LIMIT = env_int("T4DM_LOGIN_RATE_LIMIT", 10, minimum=1)
TOKEN_RATE_LIMIT = env_int("T4DM_TOKEN_RATE_LIMIT", 30, minimum=1)
RATE_LIMIT_WINDOW_SECONDS = env_int("T4DM_RATE_LIMIT_WINDOW", 300, minimum=1)
# django-axes, for the login page and the admin's: attempts in the database (SQLite or PostgreSQL, its
# migrations run with `migrate`). The limit and cool-off are read from the two settings above when used.
AXES_FAILURE_LIMIT = "t4dm_site.ratelimit.login_failure_limit"
AXES_COOLOFF_TIME = "t4dm_site.ratelimit.login_cool_off"
AXES_LOCKOUT_PARAMETERS = [["username", "ip_address"]]  # an attacker can't lock a user out everywhere
AXES_RESET_ON_SUCCESS = True
AXES_CLIENT_IP_CALLABLE = "t4dm_site.ratelimit.login_client_address"  # honours T4DM_TRUSTED_PROXY_HOPS
AXES_LOCKOUT_CALLABLE = "t4dm_site.ratelimit.login_locked_out"  # 429 with Retry-After
# Attempts while locked are not recorded: a flood cannot grow axes' rows (each appends the request).
AXES_RESET_COOL_OFF_ON_FAILURE_DURING_LOCKOUT = False
AXES_DISABLE_ACCESS_LOG = True  # failures only: no table row per successful login
AXES_VERBOSE = False
# Reverse proxies in front of the web processes that append to X-Forwarded-For (0: none; the limits
# then count REMOTE_ADDR, which behind a proxy is the proxy's).
TRUSTED_PROXY_HOPS = env_int("T4DM_TRUSTED_PROXY_HOPS", 0, minimum=0)

INSTALLED_APPS = [
    "daphne",
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "channels",
    "t4dm_site",
    "datasets_app",
    "experiments",
    "models_registry",
    "experiments.openai_compat",
    "experiments.mlflow_compat",
    "experiments.human_eval",
    "experiments.workflows",
    "experiments.integrations",
    "axes",
    "ninja",  # /api/v1/docs serves Swagger UI from ninja's own static files, not a CDN
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "t4dm_site.metrics.RequestLatencyMiddleware",  # first: times everything below it (/metrics)
    "t4dm_site.ratelimit.RequestLimitsMiddleware",  # 413 for oversized bodies, 429 for refused tokens
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "csp.middleware.CSPMiddleware",  # Content-Security-Policy: CONTENT_SECURITY_POLICY below
    "axes.middleware.AxesMiddleware",  # last: turns a locked-out login into axes' lockout response
]

# Content-Security-Policy (django-csp): scripts only from this site's own static files (no inline
# script or event handler, no eval, no CDN); styles may be inline (plotly.js and Swagger UI insert
# <style> elements); websockets back to this site ('self' covers ws:/wss: to it in CSP3 browsers).
CONTENT_SECURITY_POLICY = {
    "DIRECTIVES": {
        "default-src": ["'self'"],
        "script-src": ["'self'"],
        "style-src": ["'self'", "'unsafe-inline'"],
        "img-src": ["'self'", "data:", "blob:"],
        "font-src": ["'self'", "data:"],
        "connect-src": ["'self'"],
        "object-src": ["'none'"],
        "base-uri": ["'self'"],
        "form-action": ["'self'"],
        "frame-ancestors": ["'none'"],
    }
}

ROOT_URLCONF = "t4dm_site.urls"
ASGI_APPLICATION = "t4dm_site.asgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

# --- database -------------------------------------------------------------------------------------
DATABASE_URL = env_url(
    "DATABASE_URL",
    schemes=("sqlite", "postgres", "postgresql", "pgsql"),
    default=f"sqlite:///{DATA_DIR / 'db.sqlite3'}",
)
DATABASES = {"default": dj_database_url.parse(DATABASE_URL, conn_max_age=0)}
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # The ASGI server, the test runner and management commands share one SQLite file: wait for the
    # writer lock instead of failing with "database is locked", and use WAL so readers never block.
    DATABASES["default"]["OPTIONS"] = {
        "timeout": 20,
        "transaction_mode": "IMMEDIATE",
        "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
    }
    # A database file made before data files were private (0644) is made private when it is next used.
    for _suffix in ("", "-wal", "-shm"):
        _db_file = Path(f"{DATABASES['default']['NAME']}{_suffix}")
        try:
            if _db_file.is_file() and _db_file.stat().st_mode & 0o077:
                _db_file.chmod(0o600)
        except OSError:  # not ours to change
            pass
elif env_bool("T4DM_DB_POOL", True):
    # PostgreSQL: one psycopg connection pool per process. Under ASGI each request runs its sync code in
    # a thread of its own, so Django's per-thread persistent connections (CONN_MAX_AGE) would open one
    # per request anyway; a new session costs ~6-11 ms of database CPU, more than a small ingest batch.
    # The pool checks a connection before handing it out (CONN_HEALTH_CHECKS). Workers run -P solo
    # (no fork after the pool opens). T4DM_DB_POOL=0 goes back to a connection per request.
    DATABASES["default"]["CONN_HEALTH_CHECKS"] = True
    DATABASES["default"].setdefault("OPTIONS", {})["pool"] = {
        "min_size": env_int("T4DM_DB_POOL_MIN", 2, minimum=0),
        "max_size": env_int("T4DM_DB_POOL_MAX", 16, minimum=1),
        "timeout": env_float("T4DM_DB_POOL_TIMEOUT", 30.0, minimum=0.1),  # wait for a free connection
    }
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

AUTHENTICATION_BACKENDS = [
    "t4dm_site.auth.LoginLockoutBackend",  # django-axes: refuses a locked-out (username, address) pair
    "django.contrib.auth.backends.ModelBackend",
]
AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
]
LOGIN_URL = "login"
LOGIN_REDIRECT_URL = "overview"
LOGOUT_REDIRECT_URL = "login"

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATIC_ROOT = DATA_DIR / "static"
STATICFILES_DIRS = [BASE_DIR / "static"]
STATICFILES_FINDERS = [
    "django.contrib.staticfiles.finders.FileSystemFinder",
    "django.contrib.staticfiles.finders.AppDirectoriesFinder",
    # Serves only plotly.min.js out of the plotly wheel (no CDN: there may be no internet).
    "t4dm_site.staticfinders.PlotlyFinder",
]
# The ASGI app serves static files itself unless a front proxy does it (T4DM_SERVE_STATIC=0).
SERVE_STATIC = env_bool("T4DM_SERVE_STATIC", True)
# Collected static files stay readable by others (a proxy that serves them may run as another user);
# the umask above makes everything else private.
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {
        "BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage",
        "OPTIONS": {"file_permissions_mode": 0o644, "directory_permissions_mode": 0o755},
    },
}

# --- Celery ---------------------------------------------------------------------------------------
CELERY_BROKER_URL = env_url(
    "CELERY_BROKER_URL",
    schemes=("filesystem", "redis", "rediss", "amqp", "pyamqp", "sqla+sqlite"),
    default="filesystem://",
)
BROKER_DIR = DATA_DIR / "broker"
if CELERY_BROKER_URL.startswith("filesystem://"):
    # Same URL and folders as kombu's filesystem transport, through t4dm_site/broker.py: a message is
    # written then renamed into the queue (never read half-written), stays claimed until acknowledged,
    # and a dead worker's unacknowledged messages are queued again after T4DM_BROKER_REDELIVER_SECONDS
    # (default: the heartbeat timeout, so that a lost training job's own requeue comes first).
    CELERY_BROKER_TRANSPORT = "t4dm_site.broker:Transport"
    CELERY_BROKER_TRANSPORT_OPTIONS = {
        "data_folder_in": str(BROKER_DIR / "queue"),
        "data_folder_out": str(BROKER_DIR / "queue"),
        "control_folder": str(BROKER_DIR / "control"),
        "tmp_folder": str(BROKER_DIR / "tmp"),
        "claims_folder": str(BROKER_DIR / "claims"),
        "store_processed": False,
        "polling_interval": env_float("T4DM_BROKER_POLL_SECONDS", 0.1, minimum=0.01),
        "redeliver_after": env_float(
            "T4DM_BROKER_REDELIVER_SECONDS",
            env_float("T4DM_HEARTBEAT_TIMEOUT", 120.0, minimum=1.0),
            minimum=0.0,
        ),
    }
    # The transport expects its folders to exist, in producers and workers alike; messages carry job
    # tokens, so they are private to the service user.
    for _folder in ("queue", "control", "tmp", "claims"):
        (BROKER_DIR / _folder).mkdir(mode=0o700, parents=True, exist_ok=True)
        (BROKER_DIR / _folder).chmod(0o700)
else:
    CELERY_BROKER_TRANSPORT_OPTIONS = {}
CELERY_TASK_DEFAULT_QUEUE = env_str("T4DM_TRAINING_QUEUE") or "training"
# Queues per GPU class: a config may name one of these; workers consume one (T4DM_WORKER_QUEUES).
TRAINING_QUEUES = [
    q.strip() for q in (env_str("T4DM_TRAINING_QUEUES") or CELERY_TASK_DEFAULT_QUEUE).split(",") if q.strip()
]
if CELERY_TASK_DEFAULT_QUEUE not in TRAINING_QUEUES:
    TRAINING_QUEUES.insert(0, CELERY_TASK_DEFAULT_QUEUE)
# Dataset work (augmentation) needs database access, unlike training workers: it has its own queue.
CELERY_DATASET_QUEUE = env_str("T4DM_DATASET_QUEUE") or "datasets"
# The embedded default's one local worker takes training and dataset work alike.
WORKER_QUEUES = env_str("T4DM_WORKER_QUEUES") or f"{CELERY_TASK_DEFAULT_QUEUE},{CELERY_DATASET_QUEUE}"
CELERY_TASK_IGNORE_RESULT = True
# A worker that dies mid-job leaves its message unacknowledged, so the broker hands it to the next
# worker, which resumes from the last checkpoint.
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True

# --- Channels -------------------------------------------------------------------------------------
CHANNEL_LAYER_URL = env_url("CHANNEL_LAYER_URL", schemes=("memory", "redis", "rediss"), default="memory://")
if CHANNEL_LAYER_URL.startswith("memory://"):
    CHANNEL_LAYERS = {"default": {"BACKEND": "channels.layers.InMemoryChannelLayer"}}
else:
    CHANNEL_LAYERS = {
        "default": {
            "BACKEND": "channels_redis.core.RedisChannelLayer",
            # socket_timeout=None: with redis-py 8 the default timeout closes idle websockets after ~5 s.
            "CONFIG": {"hosts": [{"address": CHANNEL_LAYER_URL, "socket_timeout": None}]},
        }
    }

# --- cache (rate-limit counters) ------------------------------------------------------------------
# T4DM_CACHE_URL=redis://... shares the counters between web processes; production defaults to the
# channel layer's Redis. The embedded default keeps them in each process's memory.
CACHE_URL = env_url("T4DM_CACHE_URL", schemes=("redis", "rediss", "locmem"), default=None) or (
    CHANNEL_LAYER_URL if CHANNEL_LAYER_URL.startswith(("redis://", "rediss://")) else "locmem://"
)
if CACHE_URL.startswith("locmem://"):
    CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}
else:
    CACHES = {"default": {"BACKEND": "django.core.cache.backends.redis.RedisCache", "LOCATION": CACHE_URL}}

# --- T4DM -----------------------------------------------------------------------------------------
# Workers authenticate their heartbeats with this shared secret. Default: derived from SECRET_KEY, so a
# worker started with the same settings (t4dm_up, or DJANGO_SECRET_KEY on a GPU box) just works.
WORKER_SECRET = (
    env_str("T4DM_WORKER_SECRET")
    or hmac.new(SECRET_KEY.encode(), b"t4dm-worker-secret", hashlib.sha256).hexdigest()
)
WORKER_HEARTBEAT_SECONDS = env_float("T4DM_WORKER_HEARTBEAT_SECONDS", 5.0, minimum=0.1)
# A running job (or a worker) whose heartbeats stop for this long is lost.
HEARTBEAT_TIMEOUT = env_float("T4DM_HEARTBEAT_TIMEOUT", 120.0, minimum=1.0)
# What happens to a lost job: "requeue" (resume from its last checkpoint on another worker) or "fail".
LOST_JOB_POLICY = env_str("T4DM_LOST_JOB_POLICY") or "requeue"
if LOST_JOB_POLICY not in ("requeue", "fail"):
    raise ImproperlyConfigured(f"T4DM_LOST_JOB_POLICY must be requeue or fail, got {LOST_JOB_POLICY!r}")
LOST_JOB_MAX_REQUEUES = env_int("T4DM_LOST_JOB_MAX_REQUEUES", 3, minimum=0)
# A job that workers hand back (too little GPU memory, too few GPUs) is queued again this many times
# before it fails with the reason.
JOB_MAX_REFUSALS = env_int("T4DM_JOB_MAX_REFUSALS", 5, minimum=1)
# How often `t4dm_up` looks for lost jobs (0 = never; then run `manage.py t4dm_reap_lost_jobs` by cron).
REAP_INTERVAL_SECONDS = env_float("T4DM_REAP_INTERVAL_SECONDS", 15.0, minimum=0.0)
# Live-page outbox rows older than this are pruned with the lost-job check (each record's newest row
# stays: t4dm_site/housekeeping.py).
OUTBOX_KEEP_HOURS = env_float("T4DM_OUTBOX_KEEP_HOURS", 24.0, minimum=0.0)


# GPU price table for estimates: "NAME=USD_PER_HOUR,..." overrides/extends experiments.estimate.GPUS.
def _gpu_prices(raw: str) -> dict[str, float]:
    prices = {}
    for item in filter(None, (part.strip() for part in raw.split(","))):
        name, _, price = item.partition("=")
        try:
            prices[name.strip()] = float(price)
        except ValueError:
            raise ImproperlyConfigured(f"T4DM_GPU_PRICES: expected NAME=USD_PER_HOUR, got {item!r}") from None
    return prices


GPU_PRICES = _gpu_prices(env_str("T4DM_GPU_PRICES") or "")
# The finetune configuration file (the seed's `finetune:` YAML): T4DM_FINETUNE_CONFIG, else ./finetune.yaml
# if present, else built-in defaults. A bad file stops start-up naming the key and line.
FINETUNE_CONFIG = load_finetune_config(env_path=env_str("T4DM_FINETUNE_CONFIG"), base_dir=BASE_DIR)
# The seed's `versioning:` block: a succeeded job becomes a model version; compare it to its base.
# The file gives the values; T4DM_AUTO_VERSION / T4DM_COMPARE_TO_BASE still override them.
for _key, _env in (("auto_version", "T4DM_AUTO_VERSION"), ("compare_to_base", "T4DM_COMPARE_TO_BASE")):
    if env_str(_env) is not None:
        FINETUNE_CONFIG.override(f"versioning.{_key}", env_bool(_env, True), f"env {_env}")
T4DM_VERSIONING = dict(FINETUNE_CONFIG.values["versioning"])
INGEST_MAX_BATCH = env_int("T4DM_INGEST_MAX_BATCH", 5000, minimum=1)
WS_MAX_POINTS_PER_SERIES = env_int("T4DM_WS_MAX_POINTS", 2000, minimum=10)
# Where users may point prepare_dataset at a server-side file; nothing outside it is readable.
IMPORT_ROOT = Path(env_str("T4DM_IMPORT_ROOT") or DATA_DIR / "imports").resolve()
# Where a model may be named by server path (experiments/model_refs.py): os.pathsep-separated folders.
# Not the artifact root: job outputs are reached by job id or version reference with the sharing rule.
MODEL_ROOTS = [
    Path(p).resolve()
    for p in (env_str("T4DM_MODEL_ROOTS") or f"{TINY_MODEL_DIR}:{DATA_DIR / 'models'}").split(":")
    if p.strip()
]
# Whether workers may download base models from the Hugging Face hub (experiments/model_refs.py
# hub_models_enabled). Off by default: workers here have no network, so a hub id for local training is
# refused at config creation (400 listing what can be used) instead of failing on the worker.
HUB_MODELS = env_bool("T4DM_HUB_MODELS", False)
# Evaluations run on a worker with database access; by default the training queue (the embedded worker).
EVAL_QUEUE = env_str("T4DM_EVAL_QUEUE") or CELERY_TASK_DEFAULT_QUEUE

# --- serving (/v1/chat/completions, /v1/completions: models_registry/serving/) --------------------
# Serving workers consume their own queue with a thread pool (`t4dm_up` starts one beside the training
# worker); they need no database, only the model folders and T4DM_SERVER_URL to send tokens back.
SERVING_QUEUE = env_str("T4DM_SERVING_QUEUE") or "serving"
SERVING_CONCURRENCY = env_int("T4DM_SERVING_CONCURRENCY", 8, minimum=1)  # requests in one worker at once
SERVING_MAX_BATCH = env_int("T4DM_SERVING_MAX_BATCH", 8, minimum=1)
SERVING_IDLE_S = env_float("T4DM_SERVING_IDLE_S", 300.0, minimum=0.0)  # a model unused this long is unloaded
# How long the web side waits for a worker to take a request (cold start: imports and model load), and
# then for each next piece of it.
SERVING_TIMEOUT_S = env_float("T4DM_SERVING_TIMEOUT_S", 120.0, minimum=1.0)
SERVING_MAX_TOKENS = env_int("T4DM_SERVING_MAX_TOKENS", 4096, minimum=1)
SERVING_BACKEND = env_str("T4DM_SERVING_BACKEND") or "auto"  # auto | transformers | vllm
# torch CPU threads of a serving worker (0: torch's default); on a shared CPU machine 1 avoids threads
# waiting on each other for every token.
SERVING_TORCH_THREADS = env_int("T4DM_SERVING_TORCH_THREADS", 0, minimum=0)


def _quality_thresholds(raw: str | None) -> dict | None:
    """T4DM_QUALITY_THRESHOLDS: JSON like {"accuracy": {">=": 0.85}, "perplexity": {"<=": 10}}.
    (Operators are checked when an evaluation uses them; the engine is too heavy to import here.)"""
    if not raw:
        return None  # the evaluation engine's defaults (the seed's 0.85 / 10)
    import json

    try:
        value = json.loads(raw)
    except ValueError as exc:
        raise ImproperlyConfigured(f"T4DM_QUALITY_THRESHOLDS: not JSON: {exc}") from None
    if not isinstance(value, dict) or not all(
        isinstance(rule, dict | int | float) for rule in value.values()
    ):
        raise ImproperlyConfigured('T4DM_QUALITY_THRESHOLDS: expected {"metric": {">=": number}, ...}')
    return value


QUALITY_THRESHOLDS = _quality_thresholds(env_str("T4DM_QUALITY_THRESHOLDS"))
# Four-eyes rule for production: how many different people (the promoter and those who signed off the
# sample outputs) a promotion to production needs. 1 lets one person review and promote alone.
PROMOTION_PEOPLE = env_int("T4DM_PROMOTION_PEOPLE", 2, minimum=1)

# T4DM_LOG_FORMAT=json: one JSON object a line (time, level, logger, message, and any `extra=` fields),
# for a log shipper; plain text otherwise. docs/operations.md.
LOG_FORMAT = env_str("T4DM_LOG_FORMAT") or "plain"
if LOG_FORMAT not in ("plain", "json"):
    raise ImproperlyConfigured(f"T4DM_LOG_FORMAT must be plain or json, got {LOG_FORMAT!r}")
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {
        "plain": {"format": "%(asctime)s %(levelname)s %(name)s: %(message)s"},
        "json": {
            "()": "pythonjsonlogger.json.JsonFormatter",
            "format": "%(asctime)s %(levelname)s %(name)s %(process)d %(message)s",
            "rename_fields": {"asctime": "time", "levelname": "level", "name": "logger"},
        },
    },
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": LOG_FORMAT}},
    "root": {"handlers": ["console"], "level": env_str("T4DM_LOG_LEVEL") or "INFO"},
    "loggers": {"django.channels.server": {"level": "WARNING"}},
}
# JSON: Celery workers keep this configuration instead of installing their own plain-text root handler.
CELERY_WORKER_HIJACK_ROOT_LOGGER = LOG_FORMAT == "plain"
# /metrics (t4dm_site/metrics.py): scrapers send `Authorization: Bearer $T4DM_METRICS_TOKEN`; admins may
# always read it with their own API token or session. Empty: admins only.
METRICS_TOKEN = env_str("T4DM_METRICS_TOKEN") or ""

# finetune_openai: the OpenAI API (or any OpenAI-compatible server, e.g. another T4DM's /v1) and its key.
OPENAI_BASE_URL = env_str("T4DM_OPENAI_BASE_URL") or "https://api.openai.com/v1"
OPENAI_API_KEY = env_str("T4DM_OPENAI_API_KEY") or ""

# --- integrations (webhooks, validator hook) ------------------------------------------------------
# Webhook deliveries need the database: by default the datasets queue (the embedded worker takes it).
WEBHOOK_QUEUE = env_str("T4DM_WEBHOOK_QUEUE") or CELERY_DATASET_QUEUE
WEBHOOK_MAX_RETRIES = env_int("T4DM_WEBHOOK_MAX_RETRIES", 5, minimum=0)
# Retry n waits BACKOFF * 2**n seconds (10 s, 20 s, 40 s, ...).
WEBHOOK_RETRY_BACKOFF_SECONDS = env_float("T4DM_WEBHOOK_RETRY_BACKOFF_SECONDS", 10.0, minimum=0.0)
WEBHOOK_TIMEOUT_SECONDS = env_float("T4DM_WEBHOOK_TIMEOUT_SECONDS", 10.0, minimum=0.1)
# A pluggable dataset/output validator: "package.module:function" or an http(s) URL (or both).
VALIDATOR_HOOK = env_str("T4DM_VALIDATOR_HOOK") or ""
if VALIDATOR_HOOK and not all(VALIDATOR_HOOK.partition(":")[::2]):
    raise ImproperlyConfigured(
        f"T4DM_VALIDATOR_HOOK must look like package.module:function, got {VALIDATOR_HOOK!r}"
    )
VALIDATOR_URL = env_url("T4DM_VALIDATOR_URL", schemes=("http", "https"), default="")
VALIDATOR_TIMEOUT_SECONDS = env_float("T4DM_VALIDATOR_TIMEOUT_SECONDS", 30.0, minimum=0.1)
