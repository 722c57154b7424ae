"""Assignments made before 0002 kept their numeric ids (now text: "1", "2", … in item order). Give each
a random one, and point its rating at it. A migration of its own: the data change must not share a
transaction with 0002's schema change (PostgreSQL refuses DDL on a table with pending deferred checks)."""

import secrets

from django.db import migrations


def rekey(apps, schema_editor):
    Assignment = apps.get_model("human_eval", "HumanEvalAssignment")
    Rating = apps.get_model("human_eval", "HumanEvalRating")
    for old in list(Assignment.objects.filter(id__regex=r"^[0-9]+$").values_list("id", flat=True)):
        new = secrets.token_urlsafe(16)
        Assignment.objects.filter(id=old).update(id=new)
        Rating.objects.filter(assignment_id=old).update(assignment_id=new)


class Migration(migrations.Migration):
    dependencies = [("human_eval", "0002_opaque_assignment_ids_and_no_seed")]

    operations = [migrations.RunPython(rekey, migrations.RunPython.noop)]
