import secrets

from django import forms
from django.contrib import admin

from experiments.integrations.models import WebhookDelivery, WebhookSubscription


class WebhookSubscriptionForm(forms.ModelForm):
    """The signing secret is write-only here: never rendered back into the page (tests/security)."""

    secret = forms.CharField(
        required=False,
        min_length=16,
        max_length=200,
        widget=forms.PasswordInput(render_value=False),
        help_text="Leave blank to keep the current secret (a new subscription gets a generated one).",
    )

    class Meta:
        model = WebhookSubscription
        fields = ("url", "secret", "event_types", "active", "description", "created_by", "created_at")

    def clean_secret(self):
        value = self.cleaned_data.get("secret")
        if value:
            return value
        return self.instance.secret if self.instance.pk else secrets.token_urlsafe(32)


class WebhookDeliveryInline(admin.TabularInline):
    model = WebhookDelivery
    extra = 0
    can_delete = False
    fields = (
        "delivery_id",
        "event_type",
        "status",
        "attempts",
        "last_status_code",
        "last_error",
        "created_at",
    )
    readonly_fields = fields
    show_change_link = True
    ordering = ("-pk",)

    def has_add_permission(self, request, obj=None):
        return False


@admin.register(WebhookSubscription)
class WebhookSubscriptionAdmin(admin.ModelAdmin):
    form = WebhookSubscriptionForm
    list_display = ("__str__", "event_types", "active", "created_by", "created_at")
    list_filter = ("active",)
    search_fields = ("url", "description")
    inlines = [WebhookDeliveryInline]


@admin.register(WebhookDelivery)
class WebhookDeliveryAdmin(admin.ModelAdmin):
    list_display = (
        "__str__",
        "subscription",
        "event_type",
        "status",
        "attempts",
        "last_status_code",
        "created_at",
    )
    list_filter = ("status", "event_type")
    search_fields = ("event_type", "delivery_id", "event_id")
    readonly_fields = (
        "subscription",
        "delivery_id",
        "event_id",
        "event_type",
        "payload",
        "status",
        "attempts",
        "last_status_code",
        "last_error",
        "created_at",
        "last_attempt_at",
        "delivered_at",
    )
