"""The one ASGI application: Django (pages, admin, API) over HTTP and Channels consumers over websockets."""

from __future__ import annotations

import os

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "t4dm_site.settings")
django_http = get_asgi_application()  # sets up Django before anything imports models

from channels.routing import ProtocolTypeRouter, URLRouter  # noqa: E402
from django.conf import settings  # noqa: E402

from experiments.routing import websocket_urlpatterns  # noqa: E402
from models_registry.routing import websocket_urlpatterns as registry_websocket_urlpatterns  # noqa: E402
from t4dm_site.asgi_limits import BodyLimitMiddleware, install_daphne_limits  # noqa: E402
from t4dm_site.fast_ingest import FastIngestMiddleware  # noqa: E402
from t4dm_site.fast_mlflow import FastMlflowMiddleware  # noqa: E402
from t4dm_site.staticfinders import StaticFilesHandler  # noqa: E402
from t4dm_site.ws_auth import SameOriginValidator, T4dmAuthStack  # noqa: E402

# Body limits where they bite: in daphne's HTTP layer (no multipart pre-parsing, 413/401 before the body
# is read) and in front of Django (see t4dm_site/asgi_limits.py).
install_daphne_limits()
# A worker's metric batch (job token, PostgreSQL) is stored before Django's stack: t4dm_site/fast_ingest.py;
# so is an MLflow client's metrics-only log-batch / log-metric: t4dm_site/fast_mlflow.py.
http_app = BodyLimitMiddleware(
    FastIngestMiddleware(
        FastMlflowMiddleware(StaticFilesHandler(django_http) if settings.SERVE_STATIC else django_http)
    )
)

application = ProtocolTypeRouter(
    {
        "http": http_app,
        # Origin must be this site's scheme + host + port (or a CSRF-trusted origin): t4dm_site/ws_auth.py.
        "websocket": SameOriginValidator(
            T4dmAuthStack(URLRouter(websocket_urlpatterns + registry_websocket_urlpatterns))
        ),
    }
)
