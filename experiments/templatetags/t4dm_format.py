"""`{% load t4dm_format %}` … `{{ seconds|duration }}` → "1h 2m", "3m 20s", "45s";
`{{ value|setting }}` → a hyperparameter as people read it: "q_proj, v_proj", "no", "—"."""

from __future__ import annotations

import json

from django import template

register = template.Library()


@register.filter
def duration(seconds) -> str:
    if seconds is None:
        return "—"
    total = max(0, round(float(seconds)))
    hours, rest = divmod(total, 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return f"{hours}h {minutes}m"
    if minutes:
        return f"{minutes}m {secs}s"
    return f"{secs}s"


@register.filter
def setting(value) -> str:
    """A configuration value for a table cell: lists joined, yes/no for booleans, "—" for none."""
    if value is None or value == "":
        return "—"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, list | tuple):
        return ", ".join(setting(v) for v in value) or "—"
    if isinstance(value, dict):
        return json.dumps(value, sort_keys=True)
    return str(value)
