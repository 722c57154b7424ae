"""The sharing rule, in one place: a record is its owner's; admins see everyone's.

Every app's `*_visible_to(user)` selector is `visible(queryset, user)` and every `*_get` is
`get_visible(...)`. Someone else's record answers the same 404 as a missing one, so ids do not tell
which records exist.
"""

from __future__ import annotations

from django.db.models import QuerySet

from t4dm_site.errors import DomainError, NotFound
from t4dm_site.public_ids import parse_public_id
from t4dm_site.roles import is_admin


def visible(queryset: QuerySet, user, *, owner_field: str = "owner") -> QuerySet:
    """The rows of `queryset` that `user` may see: their own (`owner_field` is the path to the owning
    user, e.g. "job__owner"); all of them for an admin."""
    return queryset if is_admin(user) else queryset.filter(**{owner_field: user})


def get_visible(
    queryset: QuerySet,
    user,
    public_id: str | int,
    noun: str,
    *,
    prefix: str | None = None,
    lookup: str = "pk",
    owner_field: str = "owner",
    missing: DomainError | None = None,
):
    """One record of `queryset` that `user` may see, by id. With `prefix`, `public_id` is a seed-style id
    (`job-001`) looked up by primary key; without, it is matched as given on `lookup`. Absent or not
    the user's: `missing`, by default NotFound("<noun> <id> does not exist")."""
    value = parse_public_id(prefix, public_id) if prefix else public_id
    found = visible(queryset, user, owner_field=owner_field).filter(**{lookup: value}).first()
    if found is None:
        raise missing if missing is not None else NotFound(f"{noun} {public_id} does not exist")
    return found
