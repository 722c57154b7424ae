from __future__ import annotations

from django.contrib import admin, messages

from t4dm_site.models import ApiToken
from t4dm_site.services import api_token_create


@admin.register(ApiToken)
class ApiTokenAdmin(admin.ModelAdmin):
    list_display = ["prefix", "name", "user", "created_at", "last_used_at", "revoked_at"]
    list_filter = ["revoked_at", "created_at"]
    search_fields = ["name", "prefix", "user__username"]
    fields = ["user", "name", "prefix", "created_at", "last_used_at", "revoked_at"]
    readonly_fields = ["prefix", "created_at", "last_used_at"]
    actions = ["revoke"]

    def save_model(self, request, obj, form, change):
        if change:
            super().save_model(request, obj, form, change)
            return
        # New tokens go through the service so the raw value is generated, hashed, and shown once.
        token, raw = api_token_create(user=obj.user, name=obj.name)
        obj.pk = token.pk
        obj.refresh_from_db()
        messages.warning(request, f"New API token (shown only now, copy it): {raw}")

    @admin.action(description="Revoke selected tokens")
    def revoke(self, request, queryset):
        for token in queryset.filter(revoked_at__isnull=True):
            token.revoke()


class OutboxAdmin(admin.ModelAdmin):
    """Outbox rows (a live page's updates, read by id): for looking, never for editing — a changed row
    would tell a reconnecting page something that did not happen."""

    list_display = ("id", "kind", "created_at")
    list_filter = ("kind",)
    search_fields = ("kind",)
    ordering = ("-id",)

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False
