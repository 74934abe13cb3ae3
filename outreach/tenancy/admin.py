from typing import Any

from django import forms
from django.contrib import admin
from django.http import HttpRequest
from django.utils.html import format_html, format_html_join
from rest_framework_api_key.admin import APIKeyModelAdmin

from outreach.common.errors import ApplicationError
from outreach.tenancy.models import Tenant, TenantAlert, TenantAPIKey
from outreach.tenancy.services import (
    sendgrid_key_fields,
    tenant_webhook_urls,
    webhook_public_key_clean,
)


class TenantForm(forms.ModelForm):
    """The stored SendGrid key is never sent to the browser: an admin may only replace it."""

    new_sendgrid_api_key = forms.CharField(
        label="New SendGrid API key",
        required=False,
        strip=True,
        widget=forms.PasswordInput(render_value=False, attrs={"autocomplete": "off"}),
        help_text="Leave empty to keep the current key. Stored encrypted; only its last 4 "
        "characters are ever shown.",
    )
    clear_sendgrid_api_key = forms.BooleanField(label="Remove the SendGrid API key", required=False)

    class Meta:
        model = Tenant
        # Never the stored key or the inbound secret: both are secrets.
        fields = [
            "name",
            "slug",
            "status",
            "campaigns_enabled",
            "webhook_shadow_mode",
            "sms_enabled",
            "daily_send_quota",
            "open_tracking",
            "click_tracking",
            "postal_address",
            "webhook_public_key",
        ]

    def clean_new_sendgrid_api_key(self) -> dict[str, str] | None:
        value = self.cleaned_data.get("new_sendgrid_api_key")
        if not value:
            return None
        try:
            return sendgrid_key_fields(api_key=value)
        except ApplicationError as exc:
            raise forms.ValidationError(next(iter(exc.extra.values()))[0]) from None

    def clean_webhook_public_key(self) -> str:
        value = self.cleaned_data.get("webhook_public_key") or ""
        if not value.strip():
            return ""
        try:
            return webhook_public_key_clean(public_key=value)
        except ApplicationError as exc:
            raise forms.ValidationError(next(iter(exc.extra.values()))[0]) from None

    def save(self, commit: bool = True) -> Tenant:
        tenant = super().save(commit=False)
        stored = self.cleaned_data.get("new_sendgrid_api_key")
        if stored:
            tenant.sendgrid_api_key_encrypted = stored["sendgrid_api_key_encrypted"]
            tenant.sendgrid_api_key_last4 = stored["sendgrid_api_key_last4"]
        elif self.cleaned_data.get("clear_sendgrid_api_key"):
            tenant.sendgrid_api_key_encrypted = ""
            tenant.sendgrid_api_key_last4 = ""
        if commit:
            tenant.save()
            self.save_m2m()
        return tenant


@admin.register(Tenant)
class TenantAdmin(admin.ModelAdmin):
    form = TenantForm
    list_display = [
        "name",
        "slug",
        "status",
        "campaigns_enabled",
        "webhook_shadow_mode",
        "sms_enabled",
        "daily_send_quota",
        "sendgrid_key",
        "created_at",
    ]
    list_filter = ["status", "campaigns_enabled", "webhook_shadow_mode", "sms_enabled"]
    search_fields = ["name", "slug"]
    readonly_fields = ["public_id", "sendgrid_key", "webhook_urls", "created_at", "updated_at"]
    fieldsets = [
        (None, {"fields": ["name", "slug", "status", "public_id"]}),
        (
            "Feature flags and limits",
            {
                "fields": [
                    "campaigns_enabled",
                    "webhook_shadow_mode",
                    "sms_enabled",
                    "daily_send_quota",
                    "open_tracking",
                    "click_tracking",
                    "postal_address",
                ]
            },
        ),
        (
            "SendGrid",
            {
                "fields": [
                    "sendgrid_key",
                    "new_sendgrid_api_key",
                    "clear_sendgrid_api_key",
                    "webhook_public_key",
                    "webhook_urls",
                ]
            },
        ),
        ("History", {"fields": ["created_at", "updated_at"]}),
    ]

    @admin.display(description="SendGrid key")
    def sendgrid_key(self, tenant: Tenant) -> str:
        last4 = tenant.sendgrid_api_key_last4
        return f"…{last4}" if last4 else "(platform key)"

    @admin.display(description="Webhook URLs")
    def webhook_urls(self, tenant: Tenant) -> str:
        if not tenant.pk:
            return "(shown once the tenant is saved)"
        return format_html(
            "<ul>{}</ul>",
            format_html_join(
                "", "<li>{}: <code>{}</code></li>", tenant_webhook_urls(tenant=tenant).items()
            ),
        )


@admin.register(TenantAPIKey)
class TenantAPIKeyAdmin(APIKeyModelAdmin):
    """Adding a key shows it once (as a message); only the prefix is kept in clear."""

    list_display = ["prefix", "name", "tenant", "created", "expiry_date", "_has_expired", "revoked"]
    list_filter = ["tenant", "revoked", "created"]
    search_fields = ["name", "prefix", "tenant__slug"]
    autocomplete_fields = ["tenant"]
    list_select_related = ["tenant"]

    def get_readonly_fields(self, request: HttpRequest, obj: Any = None) -> tuple[str, ...]:
        fields = tuple(super().get_readonly_fields(request, obj))
        # A key belongs to one tenant for life: moving it would hand the integration another
        # tenant's data.
        return (*fields, "tenant") if obj is not None else fields


@admin.register(TenantAlert)
class TenantAlertAdmin(admin.ModelAdmin):
    list_display = ["created_at", "tenant", "kind", "short_message", "acknowledged_at"]
    list_filter = ["tenant", "kind", ("acknowledged_at", admin.EmptyFieldListFilter)]
    search_fields = ["message", "tenant__slug"]
    autocomplete_fields = ["tenant"]
    list_select_related = ["tenant"]
    readonly_fields = ["created_at"]

    @admin.display(description="Message")
    def short_message(self, alert: TenantAlert) -> str:
        return alert.message[:120]
