"""Static files: a finder for the one file we take from the plotly wheel, and the ASGI handler that
serves static files when no front proxy does."""

from __future__ import annotations

from pathlib import Path

from django.contrib.staticfiles.finders import BaseFinder
from django.contrib.staticfiles.handlers import ASGIStaticFilesHandler
from django.core.exceptions import SuspiciousOperation
from django.core.files.storage import FileSystemStorage
from django.http import Http404

PLOTLY_STATIC_PATH = "vendor/plotly.min.js"


def _plotly_dir() -> Path:
    import plotly

    return Path(plotly.__file__).resolve().parent / "package_data"


class PlotlyFinder(BaseFinder):
    """Exposes plotly/package_data/plotly.min.js as static/vendor/plotly.min.js, and nothing else."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.storage = FileSystemStorage(location=str(_plotly_dir()))
        self.storage.prefix = "vendor"

    def check(self, **kwargs):
        return []

    def find(self, path, find_all=False, **kwargs):
        if path != PLOTLY_STATIC_PATH:
            return [] if find_all else None
        match = str(_plotly_dir() / "plotly.min.js")
        return [match] if find_all else match

    def list(self, ignore_patterns):
        yield "plotly.min.js", self.storage


class StaticFilesHandler(ASGIStaticFilesHandler):
    """Django's ASGI static-files handler, with a 404 for a path that leaves the static folders
    (`/static/%2e%2e/...`): the finders refuse it with SuspiciousFileOperation, which the stock handler
    lets through as a 500."""

    def serve(self, request):
        try:
            return super().serve(request)
        except SuspiciousOperation as exc:
            raise Http404("no such static file") from exc
