"""The T4DM project package: settings, URLs, ASGI app, Celery app, API root and authentication."""

from t4dm_site.celery import app as celery_app

__all__ = ["celery_app"]
