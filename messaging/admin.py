"""Admin for messaging. The send ledger, events, event keys and raw webhook receipts are
history: shown, never added, changed or deleted here."""

from typing import Any

from django import forms
from django.contrib import admin
from django.http import HttpRequest

from campaigns.validation.email import InvalidEmail, email_normalize
from campaigns.validation.fields import timezone_normalize
from messaging.models import (
    EmailVerdict,
    InboundMessage,
    Message,
    MessageEvent,
    MessageEventKey,
    SenderIdentity,
    WebhookReceipt,
)
from messaging.services.identities import IDENTITY_INPUT_FIELDS, sender_identity_pause_set
from messaging.services.receipts import webhook_receipt_reprocess
from messaging.services.review import message_review_resolve
from outreach.common.admin_utils import (
    BigTableAdmin,
    ReadOnlyAdmin,
    admin_actor,
    permission_check,
    reason_action,
)
from outreach.common.errors import ApplicationError

BODY_PREVIEW_BYTES = 20_000


class SenderIdentityForm(forms.ModelForm):
    class Meta:
        model = SenderIdentity
        fields = ["tenant", *IDENTITY_INPUT_FIELDS, "domain_status"]

    def _email(self, name: str, *, required: bool) -> str:
        value = (self.cleaned_data.get(name) or "").strip()
        if not value and not required:
            return ""
        try:
            return email_normalize(email=value)
        except InvalidEmail as exc:
            raise forms.ValidationError(str(exc)) from None

    def clean_from_email(self) -> str:
        return self._email("from_email", required=True)

    def clean_reply_to(self) -> str:
        return self._email("reply_to", required=False)

    def clean_owner_email(self) -> str:
        return self._email("owner_email", required=False)

    def clean_timezone(self) -> str:
        try:
            value = timezone_normalize(self.cleaned_data.get("timezone") or "")
        except ValueError as exc:
            raise forms.ValidationError(str(exc)) from None
        if not value:
            raise forms.ValidationError("This field is required.")
        return value

    def clean_window_days(self) -> list[int]:
        days = self.cleaned_data.get("window_days") or []
        if not days:
            raise forms.ValidationError("At least one weekday is required.")
        if any(not 0 <= day <= 6 for day in days) or len(set(days)) != len(days):
            raise forms.ValidationError("Weekdays 0 (Monday) to 6 (Sunday), each at most once.")
        return sorted(days)


def _identity_pause(request: HttpRequest, identity: SenderIdentity, reason: str) -> None:
    sender_identity_pause_set(
        tenant_id=identity.tenant_id,
        identity_id=identity.pk,
        paused=True,
        actor=admin_actor(request),
        reason=reason,
    )


def _identity_resume(request: HttpRequest, identity: SenderIdentity, reason: str) -> None:
    sender_identity_pause_set(
        tenant_id=identity.tenant_id,
        identity_id=identity.pk,
        paused=False,
        actor=admin_actor(request),
        reason=reason,
    )


@admin.register(SenderIdentity)
class SenderIdentityAdmin(admin.ModelAdmin):
    form = SenderIdentityForm
    list_display = [
        "from_name",
        "from_email",
        "tenant",
        "daily_cap",
        "hourly_cap",
        "warmup_enabled",
        "paused",
        "domain_status",
    ]
    list_filter = ["tenant", "paused", "warmup_enabled", "domain_status"]
    search_fields = ["from_email", "from_name", "owner_email"]
    autocomplete_fields = ["tenant"]
    list_select_related = ["tenant"]
    readonly_fields = ["created_at", "updated_at"]
    actions = [
        reason_action(
            name="pause_identities",
            description="Pause the selected sender identities",
            explanation="From the next send on, their due sends wait; nothing is dropped.",
            apply=_identity_pause,
            permission="change",
        ),
        reason_action(
            name="resume_identities",
            description="Resume the selected sender identities",
            explanation="The sends their pause held become due at once.",
            apply=_identity_resume,
            permission="change",
        ),
    ]

    def save_model(self, request: HttpRequest, obj: SenderIdentity, form: Any, change: bool):
        """A change of ``paused`` in the form is a control change: audited by the service."""
        paused = obj.paused
        if change and "paused" in form.changed_data:
            obj.paused = not paused
        super().save_model(request, obj, form, change)
        if change and "paused" in form.changed_data:
            sender_identity_pause_set(
                tenant_id=obj.tenant_id,
                identity_id=obj.pk,
                paused=paused,
                actor=admin_actor(request),
                reason="changed in the sender identity's admin form",
            )
            obj.paused = paused


def _review_sent(request: HttpRequest, message: Message, reason: str) -> None:
    message_review_resolve(
        tenant_id=message.tenant_id,
        message_id=message.pk,
        outcome="sent",
        actor=admin_actor(request),
        reason=reason,
    )


def _review_not_sent(request: HttpRequest, message: Message, reason: str) -> None:
    message_review_resolve(
        tenant_id=message.tenant_id,
        message_id=message.pk,
        outcome="not_sent",
        actor=admin_actor(request),
        reason=reason,
    )


@admin.register(Message)
class MessageAdmin(ReadOnlyAdmin, BigTableAdmin):
    list_display = [
        "id",
        "to_email",
        "subject",
        "status",
        "channel",
        "step",
        "tenant",
        "sent_at",
    ]
    list_filter = ["tenant", "status", "channel"]
    search_fields = ["=to_email", "=provider_message_id", "=rfc_message_id"]
    raw_id_fields = ["sender_identity", "enrollment", "lead", "campaign"]
    # The ledger itself is never edited; these record an operator's decision (audited).
    actions = [
        reason_action(
            name="resolve_review_sent",
            description="Resolve needs_review: it WAS sent",
            explanation="The provider had these messages. Each becomes accepted and its "
            "enrollment goes on as after any send.",
            apply=_review_sent,
            permission="resolve_review",
        ),
        reason_action(
            name="resolve_review_not_sent",
            description="Resolve needs_review: it was NOT sent (send it again)",
            explanation="These messages never left. Each is marked failed and its step is "
            "sent again, once, as the next attempt.",
            apply=_review_not_sent,
            permission="resolve_review",
        ),
    ]
    has_resolve_review_permission = permission_check("messaging.resolve_review")


@admin.register(MessageEvent)
class MessageEventAdmin(ReadOnlyAdmin, BigTableAdmin):
    """Rows of the month-partitioned event table; ``-id`` ordering walks each partition's
    primary-key index, so the newest page is cheap however many months there are."""

    list_display = [
        "id",
        "event_type",
        "occurred_at",
        "email",
        "message_id",
        "tenant",
        "is_machine_open",
        "is_bot_click",
        "is_synthetic",
    ]
    list_filter = ["tenant", "event_type", "is_synthetic", "is_machine_open", "is_bot_click"]
    search_fields = ["=provider_event_id", "=provider_message_id", "=email"]
    ordering = ["-id"]
    raw_id_fields = ["message", "enrollment"]


@admin.register(MessageEventKey)
class MessageEventKeyAdmin(ReadOnlyAdmin, BigTableAdmin):
    list_display = ["provider_event_id", "tenant", "first_seen_at"]
    list_filter = ["tenant"]
    search_fields = ["=provider_event_id"]


@admin.register(WebhookReceipt)
class WebhookReceiptAdmin(ReadOnlyAdmin, BigTableAdmin):
    list_display = [
        "id",
        "kind",
        "tenant",
        "received_at",
        "processed_at",
        "event_count",
        "attempts",
    ]
    list_filter = ["tenant", "kind", ("processed_at", admin.EmptyFieldListFilter)]
    search_fields = ["=tenant__slug", "^last_error"]
    exclude = ["body"]
    readonly_fields = ["body_preview"]
    actions = [
        reason_action(
            name="reprocess_receipts",
            description="Re-process the selected receipts",
            explanation="Each stored body is processed again: events are deduplicated and a "
            "reply is recorded once, so only what is missing is added.",
            apply=lambda request, receipt, reason: _reprocess(request, receipt, reason),
            permission="reprocess_receipt",
        ),
    ]
    has_reprocess_receipt_permission = permission_check("messaging.reprocess_receipt")

    @admin.display(description="Body")
    def body_preview(self, receipt: WebhookReceipt) -> str:
        body = bytes(receipt.body or b"")
        text = body[:BODY_PREVIEW_BYTES].decode("utf-8", errors="replace")
        if len(body) > BODY_PREVIEW_BYTES:
            text += f"\n… ({len(body) - BODY_PREVIEW_BYTES} more bytes)"
        return text


def _reprocess(request: HttpRequest, receipt: WebhookReceipt, reason: str) -> None:
    outcome = webhook_receipt_reprocess(
        receipt_id=receipt.pk,
        tenant_id=receipt.tenant_id,
        actor=admin_actor(request),
        reason=reason,
    )
    if outcome != "processed":
        raise ApplicationError(f"not re-processed ({outcome})")


@admin.register(InboundMessage)
class InboundMessageAdmin(BigTableAdmin):
    """Only the classification may be corrected by hand; the mail itself is evidence."""

    list_display = [
        "received_at",
        "from_email",
        "subject",
        "classification",
        "matched_message",
        "tenant",
    ]
    list_filter = ["tenant", "classification", ("matched_message", admin.EmptyFieldListFilter)]
    search_fields = ["=from_email", "=message_id_header", "=in_reply_to"]
    raw_id_fields = ["receipt", "matched_message"]
    list_select_related = ["tenant", "matched_message"]

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def get_readonly_fields(self, request: HttpRequest, obj: Any = None) -> list[str]:
        return [
            f.name
            for f in InboundMessage._meta.concrete_fields
            if f.name not in {"classification", "id"}
        ]


@admin.register(EmailVerdict)
class EmailVerdictAdmin(ReadOnlyAdmin, BigTableAdmin):
    list_display = ["email", "verdict", "score", "source", "tenant", "checked_at"]
    list_filter = ["tenant", "verdict", "source"]
    search_fields = ["=email"]
