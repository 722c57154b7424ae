"""`{% load t4dm_roles %}` … `{% if user|can_train %}`: navigation by role."""

from __future__ import annotations

from django import template

from t4dm_site import roles

register = template.Library()


@register.filter
def can_train(user) -> bool:
    return roles.can_train(user)


@register.filter
def can_rate(user) -> bool:
    """Has the evaluator role (a researcher may hold it too): the top bar offers the rating queue."""
    return roles.EVALUATOR in roles.user_roles(user)
