from __future__ import annotations

import os

from celery import Celery

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "t4dm_site.settings")

app = Celery("t4dm")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()
# Sub-packages of an app with their own tasks module (not found by the per-app discovery above).
app.autodiscover_tasks(["experiments.evaluation"])
app.autodiscover_tasks(["experiments.human_eval"])
