"""Roles are Django groups. Admins are also superusers' peers: they see and manage everything."""

from __future__ import annotations

from django.contrib.auth.models import AbstractBaseUser, AnonymousUser

ADMIN = "admin"
RESEARCHER = "researcher"
EVALUATOR = "evaluator"
ROLES = (ADMIN, RESEARCHER, EVALUATOR)


def user_roles(user: AbstractBaseUser | AnonymousUser) -> set[str]:
    if not user.is_authenticated:
        return set()
    roles = set(user.groups.values_list("name", flat=True)) & set(ROLES)
    if user.is_superuser:
        roles.add(ADMIN)
    return roles


def is_admin(user) -> bool:
    return ADMIN in user_roles(user)


def can_train(user) -> bool:
    """Researchers and admins use the training API; evaluators only rate outputs."""
    return bool(user_roles(user) & {ADMIN, RESEARCHER})
