from django.contrib import admin

from models_registry.models import (
    ModelExport,
    ModelVersion,
    RegisteredModel,
    SampleReviewSignoff,
    StageTransition,
)


class StageTransitionInline(admin.TabularInline):
    model = StageTransition
    extra = 0
    readonly_fields = ["from_stage", "to_stage", "actor_name", "reason", "override", "gate", "created_at"]
    fields = readonly_fields
    can_delete = False


@admin.register(ModelVersion)
class ModelVersionAdmin(admin.ModelAdmin):
    list_display = [
        "model_id",
        "registered",
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
    raw_id_fields = ["registered", "dataset_version", "config", "job", "checkpoint", "evaluation"]
    # Stage changes go through the registry (gate + history), never a bare admin edit.
    readonly_fields = ["stage"]
    inlines = [StageTransitionInline]


@admin.register(RegisteredModel)
class RegisteredModelAdmin(admin.ModelAdmin):
    list_display = ["model_id", "owner", "created_at"]
    search_fields = ["model_id", "owner__username"]
    raw_id_fields = ["owner"]


@admin.register(StageTransition)
class StageTransitionAdmin(admin.ModelAdmin):
    list_display = ["version", "from_stage", "to_stage", "actor_name", "override", "created_at"]
    list_filter = ["to_stage", "override"]
    raw_id_fields = ["version", "actor"]


@admin.register(SampleReviewSignoff)
class SampleReviewSignoffAdmin(admin.ModelAdmin):
    list_display = ["version", "reviewer_name", "created_at"]
    raw_id_fields = ["version", "reviewer"]


@admin.register(ModelExport)
class ModelExportAdmin(admin.ModelAdmin):
    list_display = ["version", "merged", "status", "path", "created_by", "created_at"]
    raw_id_fields = ["version"]
