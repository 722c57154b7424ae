"""Rollups remember where each bucket starts and at which steps its minimum and maximum happened, so
a downsampled series keeps every extreme at its own step (M4: first, last, min, max per bucket)."""

from django.db import migrations, models

WIDTH = 256  # MetricRollup.ROLLUP_WIDTH when this migration was written


def extreme_steps_for_existing_rollups(apps, schema_editor):
    """One ordered read per series: the first step of each bucket and the steps of its extremes
    (the earliest one on a tie, as the ingest service picks)."""
    MetricPoint = apps.get_model("experiments", "MetricPoint")
    MetricRollup = apps.get_model("experiments", "MetricRollup")
    series = MetricRollup.objects.values_list("job_id", "key").distinct()
    for job_id, key in series.iterator():
        found: dict[int, list] = {}  # bucket -> [first_step, lo, lo_step, hi, hi_step]
        points = MetricPoint.objects.filter(job_id=job_id, key=key).order_by("step")
        for step, value in points.values_list("step", "value").iterator():
            b = found.get(step // WIDTH)
            if b is None:
                found[step // WIDTH] = [step, value, step, value, step]
                continue
            if value < b[1]:
                b[1], b[2] = value, step
            if value > b[3]:
                b[3], b[4] = value, step
        rollups = list(MetricRollup.objects.filter(job_id=job_id, key=key, bucket__in=list(found)))
        for rollup in rollups:
            rollup.first_step, _, rollup.lo_step, _, rollup.hi_step = found[rollup.bucket]
        MetricRollup.objects.bulk_update(rollups, ["first_step", "lo_step", "hi_step"], batch_size=2000)


class Migration(migrations.Migration):
    dependencies = [
        ("experiments", "0007_job_attempt_fencing"),
    ]

    operations = [
        migrations.AddField(
            model_name="metricrollup",
            name="first_step",
            field=models.PositiveBigIntegerField(default=0),
            preserve_default=False,
        ),
        migrations.AddField(
            model_name="metricrollup",
            name="hi_step",
            field=models.PositiveBigIntegerField(default=0),
            preserve_default=False,
        ),
        migrations.AddField(
            model_name="metricrollup",
            name="lo_step",
            field=models.PositiveBigIntegerField(default=0),
            preserve_default=False,
        ),
        migrations.RunPython(extreme_steps_for_existing_rollups, migrations.RunPython.noop),
    ]
