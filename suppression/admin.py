import contextlib
from typing import Any

from django import forms
from django.contrib import admin
from django.db.models import QuerySet
from django.http import HttpRequest

from campaigns.validation.email import InvalidEmail, email_normalize
from campaigns.validation.fields import phone_normalize
from outreach.common.admin_utils import BigTableAdmin
from suppression.models import PhoneSuppression, Suppression
from suppression.services import phone_suppression_add, phone_suppression_remove


class SuppressionForm(forms.ModelForm):
    class Meta:
        model = Suppression
        fields = ["scope", "tenant", "email", "reason", "source", "note"]

    def clean_email(self) -> str:
        # The stored form every send-time check compares against (see campaigns.validation).
        value = self.cleaned_data.get("email") or ""
        try:
            return email_normalize(email=value)
        except InvalidEmail:
            # Suppressing a malformed address is harmless and may mirror a provider's list.
            return value.strip().lower()


@admin.register(Suppression)
class SuppressionAdmin(BigTableAdmin):
    form = SuppressionForm
    list_display = ["email", "scope", "tenant", "reason", "source", "created_at"]
    list_filter = ["scope", "tenant", "reason", "source"]
    search_fields = ["=email"]
    autocomplete_fields = ["tenant"]
    readonly_fields = ["created_at"]

    def get_changeform_initial_data(self, request):
        return {"source": Suppression.Source.ADMIN, **super().get_changeform_initial_data(request)}


class PhoneSuppressionForm(forms.ModelForm):
    class Meta:
        model = PhoneSuppression
        fields = ["tenant", "phone", "reason", "note"]

    def clean_phone(self) -> str:
        # E.164, the form the SMS send path compares against.
        try:
            phone = phone_normalize(self.cleaned_data.get("phone") or "")
        except ValueError as exc:
            raise forms.ValidationError(str(exc)) from None
        if not phone:
            raise forms.ValidationError("Enter the number to stop texting.")
        return phone


@admin.register(PhoneSuppression)
class PhoneSuppressionAdmin(BigTableAdmin):
    """Numbers a tenant must not text (a STOP, Twilio's 21610, or added here).

    Adding and removing go through the suppression services, which wait for texts to the
    number already under way; an entry is never edited (remove it, add it again)."""

    form = PhoneSuppressionForm
    list_display = ["phone", "tenant", "reason", "created_at"]
    list_filter = ["reason", "tenant"]
    search_fields = ["=phone", "note"]
    autocomplete_fields = ["tenant"]
    readonly_fields = ["created_at"]

    def get_changeform_initial_data(self, request: HttpRequest) -> dict[str, Any]:
        initial = super().get_changeform_initial_data(request)
        return {"reason": PhoneSuppression.Reason.MANUAL, **initial}

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return obj is None and super().has_change_permission(request, obj)

    def get_search_results(
        self, request: HttpRequest, queryset: QuerySet, search_term: str
    ) -> tuple[QuerySet, bool]:
        # A number as people type it ("+1 (415) 555-0100") finds its E.164 entry.
        with contextlib.suppress(ValueError):
            search_term = phone_normalize(search_term) or search_term
        return super().get_search_results(request, queryset, search_term)

    def save_model(self, request: HttpRequest, obj: PhoneSuppression, form: Any, change: bool):
        phone_suppression_add(
            tenant_id=obj.tenant_id, phone=obj.phone, reason=obj.reason, note=obj.note
        )
        saved = PhoneSuppression.objects.get(tenant_id=obj.tenant_id, phone=obj.phone)
        obj.pk, obj.created_at = saved.pk, saved.created_at

    def delete_model(self, request: HttpRequest, obj: PhoneSuppression) -> None:
        phone_suppression_remove(tenant_id=obj.tenant_id, phone=obj.phone)

    def delete_queryset(self, request: HttpRequest, queryset: QuerySet) -> None:
        for tenant_id, phone in queryset.values_list("tenant_id", "phone"):
            phone_suppression_remove(tenant_id=tenant_id, phone=phone)
