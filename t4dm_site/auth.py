"""API authentication: user API tokens or the browser session (with CSRF), per-job worker tokens.

- `UserAuth(roles=...)`: `Authorization: Bearer t4dm_...` or a logged-in session. A user without one
  of the roles gets 403 (e.g. an evaluator on the training API).
- `JobTokenAuth`: `Authorization: Bearer t4job_<job pk>_...`, valid only for the job in the URL.
- `WorkerSecretAuth`: `Authorization: Bearer <T4DM_WORKER_SECRET>`, a worker process (its heartbeat).
- `LoginLockoutBackend`: django-axes' lockout check for password logins (settings AXES_*).

A refused bearer token is counted, and past the limit answered 429, by t4dm_site/ratelimit.py; valid
credentials are never refused there.
"""

from __future__ import annotations

import hmac

from axes.backends import AxesStandaloneBackend
from django.conf import settings
from ninja.security import HttpBearer
from ninja.utils import check_csrf

from t4dm_site.errors import Forbidden
from t4dm_site.models import hash_token
from t4dm_site.roles import ADMIN, RESEARCHER, user_roles_remember
from t4dm_site.services import api_token_authenticate


class UserAuth(HttpBearer):
    def __init__(self, *, roles: set[str] | None = None):
        super().__init__()
        self.roles = roles

    def __call__(self, request):
        header = request.headers.get("Authorization", "")
        if header:
            scheme, _, raw = header.partition(" ")
            user = api_token_authenticate(raw=raw.strip()) if scheme.lower() == "bearer" else None
        elif request.user.is_authenticated:
            if check_csrf(request) is not None:
                raise Forbidden(
                    "CSRF check failed: send the csrftoken cookie's value in X-CSRFToken", code="csrf_failed"
                )
            user = request.user
        else:
            user = None
        if user is None:
            return None
        # One roles query per request: kept on this request's user for the checks that follow.
        roles = user_roles_remember(user)
        if self.roles and not (roles & self.roles):
            raise Forbidden(f"this API needs the role {' or '.join(sorted(self.roles))}")
        request.user = user
        return user

    def authenticate(self, request, token):  # HttpBearer's abstract hook; __call__ does the work
        return api_token_authenticate(raw=token)


class JobTokenAuth(HttpBearer):
    """Returns the job pk the token is valid for; endpoints compare it with the job in the path."""

    def authenticate(self, request, token):
        from experiments.models import TrainingJob

        pk = job_token_pk(token)
        if pk is None:
            return None
        stored = TrainingJob.objects.filter(pk=pk).values_list("token_hash", flat=True).first()
        if not stored or not hmac.compare_digest(stored, hash_token(token)):
            return None
        return pk


def job_token_pk(token: str) -> int | None:
    """The job pk a `t4job_<pk>_...` token names (unchecked), or None for any other token."""
    from experiments.models import JOB_TOKEN_PREFIX

    if not token.startswith(JOB_TOKEN_PREFIX):
        return None
    pk_text = token[len(JOB_TOKEN_PREFIX) :].split("_", 1)[0]
    return int(pk_text) if pk_text.isdigit() else None


def worker_secret_valid(raw: str) -> bool:
    """Whether `raw` is the workers' shared secret (never true while no secret is configured)."""
    secret = getattr(settings, "WORKER_SECRET", "")
    return bool(secret) and hmac.compare_digest(raw.encode(), secret.encode())


class WorkerSecretAuth(HttpBearer):
    """`Authorization: Bearer <T4DM_WORKER_SECRET>`: a worker process, not tied to one job.

    Per-job tokens exist only while a job runs; an idle worker still has to say it is alive.
    """

    def authenticate(self, request, token):
        return "worker" if worker_secret_valid(token) else None


trainer_auth = UserAuth(roles={ADMIN, RESEARCHER})
any_user_auth = UserAuth()
job_token_auth = JobTokenAuth()
worker_secret_auth = WorkerSecretAuth()


class LoginLockoutBackend(AxesStandaloneBackend):
    """axes' backend (first in AUTHENTICATION_BACKENDS): refuses a password login while its (username,
    client address) pair is locked out. Lockouts are about HTTP logins: an authenticate() call without a
    request (a management command, the test client's login()) is left to the next backend, where axes'
    own backend would raise."""

    def authenticate(self, request, username=None, password=None, **kwargs):
        if request is None:
            return None
        return super().authenticate(request, username=username, password=password, **kwargs)
