"""Saved runs-table views: a name for the runs page's query string (filters, columns, sort, grouping),
per account, on the server (so a view follows its owner to any browser)."""

from __future__ import annotations

from urllib.parse import parse_qsl, urlencode

from django.db import transaction

from experiments.models import SavedRunsView
from t4dm_site.errors import InvalidInput, NotFound

MAX_VIEWS = 50


def runs_views_for(user) -> list[dict]:
    return [{"name": v.name, "query": v.query} for v in SavedRunsView.objects.filter(owner=user)]


def runs_view_save(*, owner, name: str, query: str) -> SavedRunsView:
    """Create or replace ``owner``'s view ``name`` (the page number is not part of a view)."""
    name = (name or "").strip()
    if not name or len(name) > 80:
        raise InvalidInput("name: give a view name of 1 to 80 characters", details={"field": "name"})
    query = urlencode([(k, v) for k, v in parse_qsl(query or "", keep_blank_values=False) if k != "page"])
    if len(query) > 2000:
        raise InvalidInput("query: a view's query is at most 2,000 characters", details={"field": "query"})
    with transaction.atomic():
        view = SavedRunsView.objects.select_for_update().filter(owner=owner, name=name).first()
        if view is None:
            if SavedRunsView.objects.filter(owner=owner).count() >= MAX_VIEWS:
                raise InvalidInput(f"you have {MAX_VIEWS} saved views: delete one first")
            return SavedRunsView.objects.create(owner=owner, name=name, query=query)
        view.query = query
        view.save(update_fields=["query", "updated_at"])
        return view


def runs_view_delete(*, owner, name: str) -> None:
    deleted, _ = SavedRunsView.objects.filter(owner=owner, name=(name or "").strip()).delete()
    if not deleted:
        raise NotFound(f"no saved view named {name!r}")
