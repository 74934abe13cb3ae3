from django import forms
from django.contrib import admin

from campaigns.validation.email import InvalidEmail, email_normalize
from outreach.common.admin_utils import BigTableAdmin
from suppression.models import Suppression


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
