"""PostgreSQL only: the metric points' primary key becomes (job_id, id), replacing both the lone `id`
key and the (job_id, id) index `metric_point_job_id` (its name is kept, as the key's constraint).

Every query of points names the job, and each index costs every ingested point an insert and its WAL:
with two indexes instead of three the ingest statement alone took ~5–10 % less database CPU per 1,000
points (docs/benchmarks.md). Django's model is unchanged: `id` is still unique (an identity
column) and the model's primary key; a lookup by `id` alone (no job) scans the table, which no code
path does (t4dm_site/metrics.py reads the id sequence instead of max(id)). SQLite keeps its rowid key
and the index.
"""

from django.db import migrations

_TABLE = "experiments_metricpoint"


def _primary_key_name(schema_editor) -> str:
    with schema_editor.connection.cursor() as cursor:
        cursor.execute(
            "SELECT conname FROM pg_constraint WHERE conrelid = %s::regclass AND contype = 'p'", [_TABLE]
        )
        return cursor.fetchone()[0]


def forwards(apps, schema_editor):
    if schema_editor.connection.vendor != "postgresql":
        return
    name = _primary_key_name(schema_editor)
    schema_editor.execute(f"ALTER TABLE {_TABLE} DROP CONSTRAINT {name}")
    schema_editor.execute("DROP INDEX metric_point_job_id")
    schema_editor.execute(f"ALTER TABLE {_TABLE} ADD CONSTRAINT metric_point_job_id PRIMARY KEY (job_id, id)")


def backwards(apps, schema_editor):
    if schema_editor.connection.vendor != "postgresql":
        return
    schema_editor.execute(f"ALTER TABLE {_TABLE} DROP CONSTRAINT metric_point_job_id")
    schema_editor.execute(f"ALTER TABLE {_TABLE} ADD CONSTRAINT {_TABLE}_pkey PRIMARY KEY (id)")
    schema_editor.execute(f"CREATE INDEX metric_point_job_id ON {_TABLE} (job_id, id)")


class Migration(migrations.Migration):
    dependencies = [
        ("experiments", "0014_saved_runs_view"),
    ]

    operations = [migrations.RunPython(forwards, backwards, elidable=False)]
