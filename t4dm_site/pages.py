"""What every server-rendered page shares: the `dashboard` guard."""

from __future__ import annotations

from functools import wraps

from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied

from t4dm_site.roles import can_train


def dashboard(view):
    """Logged in, and a researcher or admin: evaluators are refused every dashboard."""

    @login_required
    @wraps(view)
    def wrapped(request, *args, **kwargs):
        if not can_train(request.user):
            raise PermissionDenied("Dashboards are for researchers and admins; evaluators rate outputs.")
        return view(request, *args, **kwargs)

    return wrapped
