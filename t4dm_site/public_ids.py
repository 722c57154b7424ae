"""Seed-style public ids (`ds-001`, `cfg-001`, `job-001`, `eval-001`) over integer primary keys."""

from __future__ import annotations

import re

from t4dm_site.errors import NotFound

_ID = re.compile(r"^(?P<prefix>[a-z]+)-(?P<number>\d{1,18})$")


def format_public_id(prefix: str, pk: int) -> str:
    return f"{prefix}-{pk:03d}"


def parse_public_id(prefix: str, value: str | int) -> int:
    """`job-007` (or `7`) → 7. Anything else is a NotFound naming the expected form."""
    if isinstance(value, int):
        return value
    text = str(value).strip()
    if text.isdigit():
        return int(text)
    match = _ID.match(text)
    if not match or match["prefix"] != prefix:
        raise NotFound(f"{value!r} is not a valid id; expected the form {prefix}-001")
    return int(match["number"])


class PublicIdMixin:
    """Gives a model `public_id` from its class attribute `PUBLIC_ID_PREFIX`."""

    PUBLIC_ID_PREFIX = ""

    @property
    def public_id(self) -> str:
        return format_public_id(self.PUBLIC_ID_PREFIX, self.pk)
