from django.contrib import admin

from experiments.mlflow_compat.models import MLflowRun


@admin.register(MLflowRun)
class MLflowRunAdmin(admin.ModelAdmin):
    list_display = ("run_uuid", "run_name", "job", "experiment", "status", "start_time")
    list_filter = ("status",)
    search_fields = ("run_uuid", "run_name")
    raw_id_fields = ("job", "experiment")
