"""Roles are Django groups. Admins are also superusers' peers: they see and manage everything."""

from __future__ import annotations

from django.contrib.auth.models import AbstractBaseUser, AnonymousUser

ADMIN = "admin"
RESEARCHER = "researcher"
EVALUATOR = "evaluator"
ROLES = (ADMIN, RESEARCHER, EVALUATOR)


# The attribute a request's user carries its roles in, once the API authentication has read them.
_REMEMBERED = "_t4dm_roles"


def user_roles(user: AbstractBaseUser | AnonymousUser) -> set[str]:
    if not user.is_authenticated:
        return set()
    remembered = getattr(user, _REMEMBERED, None)
    if remembered is not None:
        return set(remembered)
    roles = set(user.groups.values_list("name", flat=True)) & set(ROLES)
    if user.is_superuser:
        roles.add(ADMIN)
    return roles


def user_roles_remember(user: AbstractBaseUser) -> set[str]:
    """Reads the user's roles once and keeps them on this user object, so that every later check in
    the same request (the API's role check, then the sharing check of what it reads) asks the
    database nothing. Only for a user object that lives one request: the API authentication loads a
    fresh one per request (t4dm_site/auth.py). A long-lived object (a websocket's user) is never
    primed, so a role taken away still counts at its next check."""
    roles = user_roles(user)
    setattr(user, _REMEMBERED, frozenset(roles))
    return roles


def is_admin(user) -> bool:
    return ADMIN in user_roles(user)


def can_train(user) -> bool:
    """Researchers and admins use the training API; evaluators only rate outputs."""
    return bool(user_roles(user) & {ADMIN, RESEARCHER})
