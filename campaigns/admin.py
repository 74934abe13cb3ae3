"""Admin for campaign data. Enrollments, their transitions, scheduled actions and plan versions
are shown read-only: they move only through the engine's services (which keep the exactly-once
and lease rules), never by editing a row."""

from collections.abc import Callable
from typing import Any

from django import forms
from django.contrib import admin
from django.http import HttpRequest
from django.urls import reverse
from django.utils import timezone
from django.utils.html import format_html

from campaigns.models import (
    Campaign,
    CampaignPlanVersion,
    Enrollment,
    EnrollmentTransition,
    Lead,
    ScheduledAction,
)
from campaigns.services.campaigns import campaign_status_set
from campaigns.validation.email import email_validate
from campaigns.validation.fields import country_normalize, phone_normalize, timezone_normalize
from outreach.common.admin_utils import BigTableAdmin, ReadOnlyAdmin, admin_actor, reason_action


class LeadForm(forms.ModelForm):
    class Meta:
        model = Lead
        fields = [
            "tenant",
            "email",
            "first_name",
            "last_name",
            "company",
            "title",
            "timezone",
            "country",
            "phone",
            "custom_fields",
        ]

    def clean_email(self) -> str:
        check = email_validate(email=self.cleaned_data.get("email", ""))
        if check.status == "invalid":
            raise forms.ValidationError(check.reason)
        self._email_check = check
        return check.email

    def _normalized(self, name: str, normalize: Callable[[str], str]) -> str:
        try:
            return normalize(self.cleaned_data.get(name) or "")
        except ValueError as exc:
            raise forms.ValidationError(str(exc)) from None

    def clean_phone(self) -> str:
        return self._normalized("phone", phone_normalize)

    def clean_timezone(self) -> str:
        return self._normalized("timezone", timezone_normalize)

    def clean_country(self) -> str:
        return self._normalized("country", country_normalize)


@admin.register(Lead)
class LeadAdmin(BigTableAdmin):
    form = LeadForm
    list_display = [
        "email",
        "first_name",
        "last_name",
        "company",
        "validation_status",
        "tenant",
        "created_at",
    ]
    list_filter = ["tenant", "validation_status", "is_role_address", "is_disposable"]
    # Exact and prefix matches only: a substring search would scan a million rows.
    search_fields = ["=email", "^company", "^last_name"]
    autocomplete_fields = ["tenant"]
    readonly_fields = [
        "validation_status",
        "validation_reason",
        "is_role_address",
        "is_disposable",
        "validated_at",
        "created_at",
        "updated_at",
    ]

    def save_model(self, request: HttpRequest, obj: Lead, form: Any, change: bool) -> None:
        check = getattr(form, "_email_check", None)
        if check is not None and "email" in form.changed_data:
            obj.validation_status = str(check.status)
            obj.validation_reason = check.reason[:200]
            obj.is_role_address = check.is_role_address
            obj.is_disposable = check.is_disposable
            obj.validated_at = timezone.now()
        super().save_model(request, obj, form, change)


def _campaign_status(action: str):
    def apply(request: HttpRequest, campaign: Campaign, reason: str) -> None:
        campaign_status_set(
            tenant_id=campaign.tenant_id,
            campaign_id=campaign.pk,
            action=action,
            actor=admin_actor(request),
            reason=reason,
        )

    return apply


@admin.register(Campaign)
class CampaignAdmin(admin.ModelAdmin):
    list_display = ["name", "status", "tenant", "sender_identity", "current_version", "created_at"]
    list_filter = ["tenant", "status"]
    search_fields = ["name"]
    autocomplete_fields = ["tenant"]
    raw_id_fields = ["sender_identity", "current_version"]
    list_select_related = ["tenant", "sender_identity", "current_version__campaign"]
    # Status moves only through the actions (audited; archive stops enrollments).
    readonly_fields = ["status", "analytics", "created_at", "updated_at"]
    actions = [
        reason_action(
            name="pause_campaigns",
            description="Pause the selected campaigns",
            explanation="From the next send on, their due sends wait; enrollments and their "
            "schedule are kept.",
            apply=_campaign_status("pause"),
            permission="change",
        ),
        reason_action(
            name="resume_campaigns",
            description="Resume the selected paused campaigns",
            explanation="The sends their pause held become due at once.",
            apply=_campaign_status("resume"),
            permission="change",
        ),
    ]

    @admin.display(description="Analytics")
    def analytics(self, obj: Campaign) -> str:
        if not obj.pk:
            return "-"
        url = reverse("dashboard-campaign", kwargs={"slug": obj.tenant.slug, "campaign_id": obj.pk})
        return format_html('<a href="{}">Open the dashboard</a>', url)


@admin.register(CampaignPlanVersion)
class CampaignPlanVersionAdmin(ReadOnlyAdmin):
    list_display = ["campaign", "version", "checksum", "published_at", "tenant", "created_at"]
    list_filter = ["tenant", ("published_at", admin.EmptyFieldListFilter)]
    search_fields = ["campaign__name", "=checksum"]
    list_select_related = ["tenant", "campaign"]


@admin.register(Enrollment)
class EnrollmentAdmin(ReadOnlyAdmin, BigTableAdmin):
    list_display = ["id", "lead", "campaign", "state", "current_step", "tenant", "enrolled_at"]
    list_filter = ["tenant", "state"]
    search_fields = ["=lead__email"]
    raw_id_fields = ["lead", "campaign", "plan_version", "sender_identity"]
    list_select_related = ["tenant", "lead", "campaign"]


@admin.register(EnrollmentTransition)
class EnrollmentTransitionAdmin(ReadOnlyAdmin, BigTableAdmin):
    list_display = [
        "id",
        "enrollment_id",
        "from_step",
        "trigger",
        "to_step",
        "tenant",
        "created_at",
    ]
    list_filter = ["tenant", "trigger"]
    search_fields = ["=enrollment__lead__email", "=trigger"]
    raw_id_fields = ["enrollment", "message"]


@admin.register(ScheduledAction)
class ScheduledActionAdmin(ReadOnlyAdmin, BigTableAdmin):
    list_display = [
        "id",
        "kind",
        "step",
        "enrollment_id",
        "due_at",
        "status",
        "attempt",
        "lease_expires_at",
        "tenant",
    ]
    list_filter = ["tenant", "status", "kind"]
    search_fields = ["=idempotency_key"]
    raw_id_fields = ["enrollment"]
