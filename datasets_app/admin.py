from django.contrib import admin

from datasets_app.models import Dataset, DatasetTask, DatasetTaskUpdate, DatasetVersion
from t4dm_site.admin import OutboxAdmin


class DatasetVersionInline(admin.TabularInline):
    model = DatasetVersion
    extra = 0
    fields = ["number", "origin", "parent", "content_hash", "format", "validation_status", "created_at"]
    readonly_fields = fields
    show_change_link = True


@admin.register(Dataset)
class DatasetAdmin(admin.ModelAdmin):
    list_display = ["public_id", "name", "task_type", "owner", "created_at"]
    list_filter = ["task_type", "created_at"]
    search_fields = ["name", "description", "owner__username"]
    inlines = [DatasetVersionInline]


@admin.register(DatasetVersion)
class DatasetVersionAdmin(admin.ModelAdmin):
    list_display = [
        "__str__",
        "task_type",
        "format",
        "origin",
        "validation_status",
        "content_hash",
        "created_at",
    ]
    list_filter = ["task_type", "format", "origin", "validation_status"]
    search_fields = ["dataset__name", "content_hash"]
    readonly_fields = ["content_hash", "created_at"]


@admin.register(DatasetTask)
class DatasetTaskAdmin(admin.ModelAdmin):
    list_display = ["__str__", "kind", "status", "progress", "owner", "created_at"]
    list_filter = ["kind", "status"]
    search_fields = ["owner__username", "message", "error"]
    readonly_fields = ["created_at", "updated_at"]


@admin.register(DatasetTaskUpdate)
class DatasetTaskUpdateAdmin(OutboxAdmin):
    list_display = ("id", "task", "kind", "created_at")
    raw_id_fields = ("task",)
