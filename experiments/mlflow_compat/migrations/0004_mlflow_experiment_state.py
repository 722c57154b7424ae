"""MLflow's experiment lifecycle (delete / restore) and experiment tags, beside T4DM's Experiment;
a run's inputs (`mlflow.log_input`)."""

import django.db.models.deletion
from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("experiments", "0015_metric_point_primary_key"),
        ("mlflow_compat", "0003_tracking_runs_without_heartbeat"),
    ]

    operations = [
        migrations.AddField(
            model_name="mlflowrun",
            name="inputs",
            field=models.JSONField(
                blank=True,
                default=dict,
                help_text="MLflow's run inputs: {dataset_inputs: [...], model_inputs: [...]}.",
            ),
        ),
        migrations.CreateModel(
            name="MLflowExperiment",
            fields=[
                ("id", models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name="ID")),
                ("lifecycle_stage", models.CharField(default="active", max_length=10)),
                ("tags", models.JSONField(blank=True, default=dict)),
                (
                    "last_update_time",
                    models.BigIntegerField(blank=True, help_text="Unix milliseconds.", null=True),
                ),
                (
                    "experiment",
                    models.OneToOneField(
                        on_delete=django.db.models.deletion.CASCADE,
                        related_name="mlflow_state",
                        to="experiments.experiment",
                    ),
                ),
            ],
            options={
                "verbose_name": "MLflow experiment state",
            },
        ),
    ]
