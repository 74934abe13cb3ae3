from typing import Any

from django import forms
from django.conf import settings
from django.contrib import admin
from django.http import Http404, HttpRequest
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils.html import format_html, format_html_join
from rest_framework_api_key.admin import APIKeyModelAdmin

from outreach.common.admin_utils import (
    ReadOnlyAdmin,
    admin_actor,
    permission_check,
    reason_action,
)
from outreach.common.errors import ApplicationError
from outreach.tenancy import controls, selectors
from outreach.tenancy.controls import CONTROL_COLUMNS
from outreach.tenancy.models import AuditEntry, KillSwitch, Tenant, TenantAlert, TenantAPIKey
from outreach.tenancy.services import (
    sendgrid_key_fields,
    tenant_webhook_urls,
    webhook_public_key_clean,
)

# Written only through ``controls.tenant_controls_update`` (audited), never by a form save.
CONTROLLED = frozenset({*CONTROL_COLUMNS, "paused_by"})


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
    change_reason = forms.CharField(
        label="Why (for the audit log)",
        required=False,
        widget=forms.Textarea(attrs={"rows": 2, "cols": 80}),
        help_text="Required when you change the status, a feature flag or a quota.",
    )

    class Meta:
        model = Tenant
        # Never the stored key or the inbound secret: both are secrets.
        fields = [
            "name",
            "slug",
            "status",
            "campaigns_enabled",
            "webhook_shadow_mode",
            "event_branching_enabled",
            "analytics_enabled",
            "sms_enabled",
            "inbound_enabled",
            "daily_send_quota",
            "lead_quota",
            "campaign_quota",
            "open_tracking",
            "click_tracking",
            "postal_address",
            "sms_help_text",
            "webhook_public_key",
        ]
        widgets = {"sms_help_text": forms.Textarea(attrs={"rows": 2, "cols": 80})}

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # The values the page was loaded with travel back with it (hidden inputs), so a
        # control changed elsewhere since (the tenant paused itself through the API) is not
        # mistaken for the operator's change and undone. A post without them (a script)
        # is compared with the stored row, as Django does by default.
        for name in CONTROL_COLUMNS:
            if name in self.fields and (
                not self.is_bound or self.add_initial_prefix(name) in self.data
            ):
                self.fields[name].show_hidden_initial = True

    def control_changes(self) -> dict[str, Any]:
        """The status, flag and quota values this form changes (audited, via the service)."""
        if not self.instance.pk:
            return {}
        return {
            name: self.cleaned_data[name]
            for name in CONTROL_COLUMNS
            if name in self.changed_data and name in self.cleaned_data
        }

    def clean(self) -> dict[str, Any]:
        cleaned = super().clean()
        if self.control_changes() and not (cleaned.get("change_reason") or "").strip():
            self.add_error("change_reason", "Say why you change the status, a flag or a quota.")
        return cleaned

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


def _tenant_pause(request: HttpRequest, tenant: Tenant, reason: str) -> None:
    controls.tenant_pause(tenant_id=tenant.pk, actor=admin_actor(request), reason=reason)


def _tenant_resume(request: HttpRequest, tenant: Tenant, reason: str) -> None:
    controls.tenant_resume(tenant_id=tenant.pk, actor=admin_actor(request), reason=reason)


@admin.register(Tenant)
class TenantAdmin(admin.ModelAdmin):
    form = TenantForm
    list_display = [
        "name",
        "slug",
        "status",
        "campaigns_enabled",
        "event_branching_enabled",
        "analytics_enabled",
        "sms_enabled",
        "inbound_enabled",
        "webhook_shadow_mode",
        "daily_send_quota",
        "sendgrid_key",
        "health_link",
    ]
    list_filter = [
        "status",
        "campaigns_enabled",
        "event_branching_enabled",
        "analytics_enabled",
        "sms_enabled",
        "inbound_enabled",
        "webhook_shadow_mode",
    ]
    search_fields = ["name", "slug"]
    readonly_fields = [
        "paused_by",
        "public_id",
        "health_link",
        "sendgrid_key",
        "webhook_urls",
        "created_at",
        "updated_at",
    ]
    actions = [
        reason_action(
            name="pause_tenants",
            description="Pause sending of the selected tenants",
            explanation="From the next send on, every due send of these tenants waits; "
            "nothing is dropped.",
            apply=_tenant_pause,
            permission="operate_controls",
        ),
        reason_action(
            name="resume_tenants",
            description="Resume sending of the selected tenants",
            explanation="The sends their pause held become due at once.",
            apply=_tenant_resume,
            permission="operate_controls",
        ),
    ]
    fieldsets = [
        (None, {"fields": ["name", "slug", "status", "paused_by", "public_id", "health_link"]}),
        (
            "Feature flags",
            {
                "fields": [
                    "campaigns_enabled",
                    "event_branching_enabled",
                    "analytics_enabled",
                    "sms_enabled",
                    "inbound_enabled",
                    "webhook_shadow_mode",
                ]
            },
        ),
        ("Quotas", {"fields": ["daily_send_quota", "lead_quota", "campaign_quota"]}),
        ("Audit", {"fields": ["change_reason"]}),
        ("Sending", {"fields": ["open_tracking", "click_tracking", "postal_address"]}),
        ("SMS", {"fields": ["sms_help_text"]}),
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

    has_operate_controls_permission = permission_check("tenancy.operate_controls")

    def get_readonly_fields(self, request: HttpRequest, obj: Any = None) -> list[str]:
        """Status, flags and quotas are shown, not editable, without ``operate_controls``."""
        fields = list(super().get_readonly_fields(request, obj))
        if obj is not None and not self.has_operate_controls_permission(request):
            fields += [name for name in CONTROL_COLUMNS if name not in fields]
        return fields

    def save_model(self, request: HttpRequest, obj: Tenant, form: TenantForm, change: bool) -> None:
        """Control changes go through the service (audited, resumes release held sends);
        the rest of the form is saved in the same transaction, without the control columns:
        the row the form was built on may be stale, and writing every column would silently
        undo a pause (or a flag, a quota) changed meanwhile through the API or a command."""
        if not change:
            if obj.status == Tenant.Status.PAUSED:
                obj.paused_by = Tenant.PausedBy.OPERATOR  # created paused, by an operator
            super().save_model(request, obj, form, change)
            return
        columns = {field.name for field in Tenant._meta.concrete_fields}
        written = [name for name in form.fields if name in columns and name not in CONTROLLED]
        if form.cleaned_data.get("new_sendgrid_api_key") or form.cleaned_data.get(
            "clear_sendgrid_api_key"
        ):
            written += ["sendgrid_api_key_encrypted", "sendgrid_api_key_last4"]
        obj.save(update_fields=[*written, "updated_at"])
        changes = form.control_changes()
        if changes:
            controls.tenant_controls_update(
                tenant_id=obj.pk,
                changes=changes,
                actor=admin_actor(request),
                reason=form.cleaned_data.get("change_reason", ""),
            )
        obj.refresh_from_db()

    def get_urls(self) -> list:
        urls = super().get_urls()
        health = path(
            "<int:tenant_id>/health/",
            self.admin_site.admin_view(self.health_view),
            name="tenancy_tenant_health",
        )
        return [health, *urls]

    def health_view(self, request: HttpRequest, tenant_id: int) -> TemplateResponse:
        tenant = Tenant.objects.filter(pk=tenant_id).first()
        if tenant is None or not self.has_view_permission(request, tenant):
            raise Http404("No such tenant.")
        health = selectors.tenant_health_get(tenant_id=tenant_id)
        audit = selectors.audit_list(tenant_id=tenant_id)[:10]
        return TemplateResponse(
            request,
            "admin/tenancy/tenant/health.html",
            {
                **self.admin_site.each_context(request),
                "title": f"Health of {tenant.name}",
                "opts": Tenant._meta,
                "tenant": tenant,
                "health": health,
                "audit": audit,
                "grace_minutes": settings.SEND_RECONCILE_GRACE_SECONDS // 60,
            },
        )

    @admin.display(description="Health")
    def health_link(self, tenant: Tenant) -> str:
        if not tenant.pk:
            return "-"
        url = reverse("admin:tenancy_tenant_health", args=[tenant.pk])
        return format_html('<a href="{}">Health at a glance</a>', url)

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


@admin.register(AuditEntry)
class AuditEntryAdmin(ReadOnlyAdmin):
    """The audit log: shown, never added, changed or deleted (the database refuses too)."""

    list_display = [
        "created_at",
        "actor",
        "action",
        "target_type",
        "target_id",
        "tenant",
        "short_reason",
    ]
    list_filter = ["action", "target_type", "tenant"]
    search_fields = ["actor", "=target_id", "reason"]
    list_select_related = ["tenant"]
    date_hierarchy = "created_at"

    @admin.display(description="Why")
    def short_reason(self, entry: AuditEntry) -> str:
        return entry.reason[:120]


def _switch_engage(request: HttpRequest, switch: KillSwitch, reason: str) -> None:
    controls.kill_switch_set(
        channel=switch.channel, engaged=True, actor=admin_actor(request), reason=reason
    )


def _switch_release(request: HttpRequest, switch: KillSwitch, reason: str) -> None:
    controls.kill_switch_set(
        channel=switch.channel, engaged=False, actor=admin_actor(request), reason=reason
    )


@admin.register(KillSwitch)
class KillSwitchAdmin(ReadOnlyAdmin):
    """Engaged and released only through the actions, which ask why and audit it."""

    list_display = ["channel", "engaged", "reason", "changed_by", "changed_at"]
    list_filter = ["engaged"]
    search_fields = ["channel", "reason", "changed_by"]
    actions = [
        reason_action(
            name="engage_kill_switch",
            description="ENGAGE: stop all sending on the selected channels",
            explanation="Every due send on these channels, of every tenant, waits from the "
            "next batch on (within a second everywhere). Nothing is dropped.",
            apply=_switch_engage,
            permission="operate_killswitch",
        ),
        reason_action(
            name="release_kill_switch",
            description="Release: let the selected channels send again",
            explanation="The sends the kill switch held become due at once.",
            apply=_switch_release,
            permission="operate_killswitch",
        ),
    ]
    has_operate_killswitch_permission = permission_check("tenancy.operate_killswitch")

    def changelist_view(self, request: HttpRequest, extra_context: Any = None):
        KillSwitch.objects.bulk_create(
            [KillSwitch(channel=channel) for channel in KillSwitch.Channel.values],
            ignore_conflicts=True,
        )
        return super().changelist_view(request, extra_context)
