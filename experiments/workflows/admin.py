from django.contrib import admin

from experiments.workflows.models import Workflow, WorkflowStep, WorkflowUpdate
from t4dm_site.admin import OutboxAdmin


class WorkflowStepInline(admin.TabularInline):
    model = WorkflowStep
    extra = 0
    fields = ["position", "name", "status", "attempts", "started_at", "finished_at", "error"]
    readonly_fields = fields


@admin.register(Workflow)
class WorkflowAdmin(admin.ModelAdmin):
    list_display = ["public_id", "name", "owner", "status", "created_at", "finished_at"]
    list_filter = ["status", "created_at"]
    search_fields = ["name", "owner__username", "error"]
    raw_id_fields = ["owner", "dataset_version", "config", "job", "evaluation", "model_version"]
    inlines = [WorkflowStepInline]


@admin.register(WorkflowStep)
class WorkflowStepAdmin(admin.ModelAdmin):
    list_display = ["workflow", "name", "status", "attempts", "started_at", "finished_at"]
    list_filter = ["name", "status"]
    search_fields = ["workflow__name", "error"]
    raw_id_fields = ["workflow"]


@admin.register(WorkflowUpdate)
class WorkflowUpdateAdmin(OutboxAdmin):
    list_display = ("id", "workflow", "kind", "created_at")
    raw_id_fields = ("workflow",)
