"""Account services: API tokens and roles."""

from __future__ import annotations

from django.contrib.auth.models import Group
from django.db import transaction
from django.utils import timezone

from t4dm_site.models import ApiToken, hash_token
from t4dm_site.roles import ROLES


@transaction.atomic
def api_token_create(*, user, name: str = "default") -> tuple[ApiToken, str]:
    """Create a token; returns the record and the raw token, which is never stored or shown again."""
    raw = ApiToken.generate_raw()
    token = ApiToken.objects.create(user=user, name=name, prefix=raw[:12], token_hash=hash_token(raw))
    return token, raw


def api_token_authenticate(*, raw: str):
    """The active user for a raw token, or None."""
    if not raw:
        return None
    token = (
        ApiToken.objects.select_related("user")
        .filter(token_hash=hash_token(raw), revoked_at__isnull=True, user__is_active=True)
        .first()
    )
    if token is None:
        return None
    # Throttle the write: one timestamp update a minute is enough for "last used".
    now = timezone.now()
    if token.last_used_at is None or (now - token.last_used_at).total_seconds() > 60:
        ApiToken.objects.filter(pk=token.pk).update(last_used_at=now)
    return token.user


def role_assign(*, user, role: str) -> None:
    if role not in ROLES:
        raise ValueError(f"unknown role {role!r}; choose one of {', '.join(ROLES)}")
    group, _ = Group.objects.get_or_create(name=role)
    user.groups.add(group)
