from django.contrib import admin

from models_registry.models import ModelVersion


@admin.register(ModelVersion)
class ModelVersionAdmin(admin.ModelAdmin):
    list_display = [
        "model_id",
        "version",
        "base_model",
        "stage",
        "provider",
        "final_loss",
        "created_by",
        "created_at",
    ]
    list_filter = ["stage", "provider", "base_model"]
    search_fields = ["model_id", "version", "base_model"]
    raw_id_fields = ["dataset_version", "config", "job", "checkpoint", "evaluation"]
