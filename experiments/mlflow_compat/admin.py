from django.contrib import admin

from experiments.mlflow_compat.models import MetricValueExtra, MLflowExperiment, MLflowRun


@admin.register(MLflowRun)
class MLflowRunAdmin(admin.ModelAdmin):
    list_display = ("run_uuid", "run_name", "job", "experiment", "status", "start_time")
    list_filter = ("status",)
    search_fields = ("run_uuid", "run_name")
    raw_id_fields = ("job", "experiment")


@admin.register(MetricValueExtra)
class MetricValueExtraAdmin(admin.ModelAdmin):
    """Values beyond the first at one (run, key, step), kept as MLflow keeps them."""

    list_display = ("job", "key", "step", "value")
    search_fields = ("key",)
    raw_id_fields = ("job",)


@admin.register(MLflowExperiment)
class MLflowExperimentAdmin(admin.ModelAdmin):
    """An experiment's MLflow lifecycle (active/deleted) and tags."""

    list_display = ("experiment", "lifecycle_stage", "last_update_time")
    list_filter = ("lifecycle_stage",)
    search_fields = ("experiment__name",)
    raw_id_fields = ("experiment",)
