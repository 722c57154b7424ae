"""Running MLflow runs made before tracking-only runs went without a worker heartbeat lose it too, so
the lost-job reaper stops declaring them lost (and requeueing them for a worker) while they log."""

from django.db import migrations


def clear_heartbeats(apps, schema_editor):
    MLflowRun = apps.get_model("mlflow_compat", "MLflowRun")
    TrainingJob = apps.get_model("experiments", "TrainingJob")
    running = MLflowRun.objects.filter(job__status="running").values_list("job_id", flat=True)
    TrainingJob.objects.filter(pk__in=list(running)).update(heartbeat_at=None)


class Migration(migrations.Migration):
    dependencies = [
        ("mlflow_compat", "0002_metric_value_extra"),
    ]

    operations = [migrations.RunPython(clear_heartbeats, migrations.RunPython.noop)]
