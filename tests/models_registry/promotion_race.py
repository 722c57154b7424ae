"""Two promotions to production at the same moment, from two threads with their own connections.

Used by test_stages.py in-process (SQLite) and as a script against PostgreSQL:
`DATABASE_URL=postgres://... python -m tests.models_registry.promotion_race` prints a JSON result.
"""

from __future__ import annotations

import json
import threading


def seed_two_staging_versions() -> tuple[object, list[int]]:
    from django.contrib.auth import get_user_model

    from models_registry.models import ModelVersion, RegisteredModel, Stage
    from t4dm_site.services import role_assign

    admin = get_user_model().objects.create_user(username="race-admin", password="pw")
    role_assign(user=admin, role="admin")
    # as the registry leaves it after a first version
    registered = RegisteredModel.objects.create(owner=admin, model_id="t4dm-race")
    pks = []
    for number in ("1.0.0", "1.1.0"):
        version = ModelVersion.objects.create(
            registered=registered,
            model_id="t4dm-race",
            version=number,
            base_model="tiny",
            stage=Stage.STAGING,
        )
        pks.append(version.pk)
    return admin, pks


def promote_at_once(admin, pks: list[int]) -> dict:
    """Each thread promotes one of `pks` (with an admin override: the gate is not under test here)."""
    from django.db import connection

    from models_registry.models import ModelVersion
    from models_registry.services import model_version_transition

    barrier = threading.Barrier(len(pks))
    outcomes: dict[int, str] = {}

    def promote(pk: int) -> None:
        try:
            version = ModelVersion.objects.get(pk=pk)
            barrier.wait(timeout=10)
            model_version_transition(
                version=version, to_stage="production", actor=admin, reason="race test", override=True
            )
            outcomes[pk] = "ok"
        except Exception as exc:  # reported, the test asserts on it
            outcomes[pk] = f"{type(exc).__name__}: {exc}"
        finally:
            connection.close()

    threads = [threading.Thread(target=promote, args=(pk,)) for pk in pks]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    stages = dict(ModelVersion.objects.filter(pk__in=pks).values_list("version", "stage"))
    return {"outcomes": list(outcomes.values()), "stages": stages}


if __name__ == "__main__":
    import django

    django.setup()
    from django.core.management import call_command

    call_command("migrate", verbosity=0)
    admin, pks = seed_two_staging_versions()
    print(json.dumps(promote_at_once(admin, pks)))
