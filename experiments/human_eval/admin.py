from __future__ import annotations

from django.contrib import admin, messages

from experiments.human_eval.models import (
    HumanEvalAssignment,
    HumanEvalItem,
    HumanEvalRating,
    HumanEvalTask,
    HumanEvalUpdate,
)
from experiments.human_eval.services import assignable_evaluators, assignments_reassign
from t4dm_site.errors import DomainError


@admin.register(HumanEvalTask)
class HumanEvalTaskAdmin(admin.ModelAdmin):
    list_display = ("__str__", "mode", "status", "overlap", "owner", "created_at")
    list_filter = ("mode", "status")
    search_fields = ("name", "owner__username")
    filter_horizontal = ("evaluators",)

    def formfield_for_manytomany(self, db_field, request, **kwargs):
        if db_field.name == "evaluators":  # the same rule as the set-up API: evaluators only
            kwargs["queryset"] = assignable_evaluators().order_by("username")
        return super().formfield_for_manytomany(db_field, request, **kwargs)


@admin.register(HumanEvalItem)
class HumanEvalItemAdmin(admin.ModelAdmin):
    list_display = ("__str__", "task", "model_a", "model_b")
    list_filter = ("task",)
    search_fields = ("prompt", "output_a", "output_b")


@admin.register(HumanEvalAssignment)
class HumanEvalAssignmentAdmin(admin.ModelAdmin):
    list_display = ("__str__", "task", "evaluator", "status", "position", "skips")
    list_filter = ("status", "task", "evaluator")
    search_fields = ("evaluator__username", "item__prompt")
    actions = ["reassign_remaining"]

    @admin.action(description="Reassign the remaining items of the selected assignments' evaluators")
    def reassign_remaining(self, request, queryset):
        moved = 0
        pairs = {(a.task, a.evaluator) for a in queryset.select_related("task", "evaluator")}
        for task, evaluator in pairs:
            try:
                moved += assignments_reassign(task=task, from_evaluator=evaluator)
            except DomainError as exc:
                self.message_user(request, f"{task.public_id}, {evaluator}: {exc.message}", messages.WARNING)
        self.message_user(request, f"Moved {moved} remaining item(s) to other evaluators.")


@admin.register(HumanEvalRating)
class HumanEvalRatingAdmin(admin.ModelAdmin):
    list_display = ("__str__", "task", "evaluator", "scores", "created_at")
    list_filter = ("task",)
    search_fields = ("evaluator__username", "comment")


@admin.register(HumanEvalUpdate)
class HumanEvalUpdateAdmin(admin.ModelAdmin):
    list_display = ("__str__", "task", "kind", "created_at")
    list_filter = ("kind",)
    readonly_fields = ("task", "kind", "payload", "created_at")
