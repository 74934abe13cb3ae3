"""Shapes of the campaigns API and the lead timeline: request bodies and responses."""

from typing import Any

from drf_spectacular.utils import PolymorphicProxySerializer
from rest_framework import serializers

from campaigns.models import Campaign, CampaignPlanVersion, Enrollment
from campaigns.services.enrollment import MAX_LEADS_PER_CALL
from outreach.common.serializers import (
    StrictBooleanField,
    StrictCharField,
    StrictIntegerField,
    StrictSerializer,
)

# -- Campaigns ------------------------------------------------------------------------------


class CampaignInputSerializer(StrictSerializer):
    name = StrictCharField(max_length=200)
    description = StrictCharField(max_length=10_000, required=False, allow_blank=True)
    sender_identity_id = StrictIntegerField(
        min_value=1, help_text="The sender identity (from-address) the campaign mails from."
    )


class CampaignSerializer(serializers.ModelSerializer):
    sender_identity_id = serializers.IntegerField()
    current_version = serializers.SerializerMethodField(
        help_text="Number of the published version new enrollments start on (null: none)."
    )

    class Meta:
        model = Campaign
        fields = [
            "id",
            "name",
            "description",
            "status",
            "sender_identity_id",
            "current_version",
            "created_at",
            "updated_at",
        ]
        read_only_fields = fields

    def get_current_version(self, campaign: Campaign) -> int | None:
        version = campaign.current_version
        return version.version if version is not None else None


class CampaignFilterSerializer(serializers.Serializer):
    status = serializers.ChoiceField(choices=Campaign.Status.choices, required=False)


# -- Plan versions ----------------------------------------------------------------------------


class PlanField(serializers.JSONField):
    """Any JSON value: the plan validator, not the serializer, judges its shape so that every
    problem is reported with its JSON pointer."""


class PlanInputSerializer(StrictSerializer):
    plan = PlanField(help_text="A campaign plan; see docs/plan-format.md and its JSON Schema.")


class CampaignPlanVersionSerializer(serializers.ModelSerializer):
    campaign_id = serializers.IntegerField()
    is_current = serializers.SerializerMethodField()

    class Meta:
        model = CampaignPlanVersion
        fields = [
            "campaign_id",
            "version",
            "checksum",
            "plan",
            "is_current",
            "created_at",
            "published_at",
        ]
        read_only_fields = fields

    def get_is_current(self, version: CampaignPlanVersion) -> bool:
        current = self.context.get("current_version_id")
        return current is not None and current == version.pk


class SmsSegmentsSerializer(serializers.Serializer):
    encoding = serializers.CharField(help_text="GSM-7 or UCS-2.")
    characters = serializers.IntegerField(
        help_text="Places used: GSM-7 septets (extensions count 2) or UTF-16 code units."
    )
    segments = serializers.IntegerField(help_text="What a carrier bills.")


class PlanValidSerializer(serializers.Serializer):
    valid = serializers.BooleanField()
    warnings = serializers.DictField(
        child=serializers.ListField(child=serializers.CharField()),
        help_text="JSON pointer → warnings (the plan is valid; they are advice).",
    )
    sms_segments = serializers.DictField(
        child=SmsSegmentsSerializer(),
        help_text="Each SMS step's body pointer → its cost, counting the fixed text (merge "
        "fields as their defaults); the preview counts a lead's real text.",
    )


# -- Enrollment -----------------------------------------------------------------------------


class EnrollInputSerializer(StrictSerializer):
    lead_ids = serializers.ListField(
        child=StrictIntegerField(min_value=1, max_value=2**63 - 1),
        required=False,
        max_length=MAX_LEADS_PER_CALL,
        help_text=f"Lead ids; with `emails`, at most {MAX_LEADS_PER_CALL:,} in all.",
    )
    emails = serializers.ListField(
        child=StrictCharField(max_length=320),
        required=False,
        max_length=MAX_LEADS_PER_CALL,
        help_text="Addresses of existing leads (matched case-insensitively).",
    )

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        lead_ids, emails = attrs.get("lead_ids") or [], attrs.get("emails") or []
        if not lead_ids and not emails:
            raise serializers.ValidationError({"lead_ids": ["Give lead_ids or emails."]})
        if len(lead_ids) + len(emails) > MAX_LEADS_PER_CALL:
            raise serializers.ValidationError(
                {"lead_ids": [f"At most {MAX_LEADS_PER_CALL:,} leads per call in all."]}
            )
        return attrs


class EnrolledSerializer(serializers.Serializer):
    lead_id = serializers.IntegerField()
    email = serializers.CharField()
    enrollment_id = serializers.IntegerField()


class EnrollSkippedSerializer(serializers.Serializer):
    lead_id = serializers.IntegerField(required=False)
    email = serializers.CharField(required=False)
    reason = serializers.CharField(
        help_text="`not_found`, `invalid`, `suppressed` or `already_enrolled`."
    )
    detail = serializers.CharField(required=False, help_text="Why an address is invalid.")


class EnrollResultSerializer(serializers.Serializer):
    enrolled = EnrolledSerializer(many=True)
    skipped = EnrollSkippedSerializer(many=True)


class EnrollmentSerializer(serializers.ModelSerializer):
    lead_id = serializers.IntegerField()
    lead_email = serializers.CharField(source="lead.email")
    campaign_id = serializers.IntegerField()
    plan_version = serializers.IntegerField(source="plan_version.version")

    class Meta:
        model = Enrollment
        fields = [
            "id",
            "lead_id",
            "lead_email",
            "campaign_id",
            "plan_version",
            "state",
            "current_step",
            "step_seq",
            "step_entered_at",
            "outcome",
            "stop_reason",
            "last_error",
            "paused_until",
            "enrolled_at",
            "updated_at",
            "finished_at",
        ]
        read_only_fields = fields


class EnrollmentFilterSerializer(serializers.Serializer):
    state = serializers.ChoiceField(choices=Enrollment.State.choices, required=False)


# -- Preview --------------------------------------------------------------------------------


class PreviewQuerySerializer(serializers.Serializer):
    lead_id = serializers.IntegerField(min_value=1, max_value=2**63 - 1)
    version = serializers.IntegerField(
        min_value=1,
        max_value=2**31 - 1,
        required=False,
        help_text="Plan version number; default: the published one (else the latest).",
    )


class PreviewVariantSerializer(serializers.Serializer):
    name = serializers.CharField()
    weight = serializers.IntegerField(allow_null=True)
    subject = serializers.CharField(allow_blank=True)
    text = serializers.CharField(allow_blank=True)
    html = serializers.CharField(allow_blank=True)


class PreviewSmsSerializer(serializers.Serializer):
    to = serializers.CharField(allow_blank=True, help_text="The lead's phone (E.164).")
    body = serializers.CharField(allow_blank=True)
    encoding = serializers.CharField(help_text="GSM-7 or UCS-2.")
    characters = serializers.IntegerField()
    segments = serializers.IntegerField()
    warning = serializers.CharField(allow_null=True)


class PreviewStepSerializer(serializers.Serializer):
    step = serializers.CharField()
    type = serializers.CharField(help_text="email or sms")
    thread_with = serializers.CharField(allow_null=True)
    variants = PreviewVariantSerializer(many=True, help_text="Email steps.")
    sms = PreviewSmsSerializer(allow_null=True, help_text="SMS steps: the text and its cost.")


class PreviewSerializer(serializers.Serializer):
    campaign_id = serializers.IntegerField()
    version = serializers.IntegerField()
    lead_id = serializers.IntegerField()
    steps = PreviewStepSerializer(many=True)


# -- Migration ------------------------------------------------------------------------------


class MigrateInputSerializer(StrictSerializer):
    to_version = StrictIntegerField(
        min_value=1, max_value=2**31 - 1, help_text="Version number to move enrollments to."
    )
    step_map = serializers.DictField(
        child=StrictCharField(max_length=100, allow_blank=False),
        allow_empty=True,
        help_text=(
            'Current step name → step of the target version, e.g. `{"intro": "intro", '
            '"follow_up": "nudge"}`. Mapping a step to the same name keeps the enrollment there.'
        ),
    )
    dry_run = StrictBooleanField(
        required=False, default=True, help_text="Default true: report without changing anything."
    )


class MigrationOutcomeSerializer(serializers.Serializer):
    enrollment_id = serializers.IntegerField()
    lead_id = serializers.IntegerField()
    state = serializers.CharField()
    from_version = serializers.IntegerField()
    from_step = serializers.CharField()
    outcome = serializers.ChoiceField(choices=["moved", "stays", "error"])
    to_step = serializers.CharField(allow_null=True)
    reason = serializers.CharField()


class MigrationCountsSerializer(serializers.Serializer):
    moved = serializers.IntegerField()
    stays = serializers.IntegerField()
    error = serializers.IntegerField()


class MigrationResultSerializer(serializers.Serializer):
    to_version = serializers.IntegerField()
    dry_run = serializers.BooleanField()
    counts = MigrationCountsSerializer()
    outcomes = MigrationOutcomeSerializer(many=True)


# -- Lead timeline --------------------------------------------------------------------------


class _EntryBase(serializers.Serializer):
    at = serializers.DateTimeField()
    enrollment_id = serializers.IntegerField(allow_null=True)
    campaign_id = serializers.IntegerField(allow_null=True)
    summary = serializers.CharField(help_text="One line an AE can read.")


class EnrolledDetailSerializer(serializers.Serializer):
    campaign_name = serializers.CharField()
    version = serializers.IntegerField()
    start_step = serializers.CharField()
    state = serializers.CharField(help_text="The enrollment's state now.")
    current_step = serializers.CharField()
    outcome = serializers.CharField()
    stop_reason = serializers.CharField()
    last_error = serializers.CharField()
    paused_until = serializers.DateTimeField(allow_null=True)
    finished_at = serializers.DateTimeField(allow_null=True)


class MessageDetailSerializer(serializers.Serializer):
    message_id = serializers.UUIDField(help_text="Our public message id (in SendGrid custom_args).")
    step = serializers.CharField()
    step_seq = serializers.IntegerField()
    variant = serializers.CharField()
    attempt = serializers.IntegerField()
    subject = serializers.CharField()
    status = serializers.CharField()
    to_email = serializers.CharField()
    sent_at = serializers.DateTimeField(allow_null=True)
    provider_message_id = serializers.CharField()
    error_code = serializers.CharField()
    error_message = serializers.CharField()


class EventDetailSerializer(serializers.Serializer):
    event_id = serializers.IntegerField()
    type = serializers.CharField()
    message_id = serializers.UUIDField(allow_null=True)
    step = serializers.CharField(allow_null=True)
    occurred_at = serializers.DateTimeField()
    is_machine_open = serializers.BooleanField()
    is_bot_click = serializers.BooleanField()
    is_synthetic = serializers.BooleanField(help_text="A timeout (no_open …), not a real event.")


class TransitionDetailSerializer(serializers.Serializer):
    from_step = serializers.CharField()
    to_step = serializers.CharField(help_text="Empty when the journey ended.")
    trigger = serializers.CharField()
    cause = serializers.CharField()
    message_id = serializers.UUIDField(allow_null=True)
    event_id = serializers.IntegerField(allow_null=True)


class ScheduledDetailSerializer(serializers.Serializer):
    action = serializers.ChoiceField(choices=["send", "advance", "timeout", "resume"])
    step = serializers.CharField()
    due_at = serializers.DateTimeField()
    status = serializers.ChoiceField(choices=["pending", "claimed"])
    timeout = serializers.CharField(help_text="no_open, no_click or no_reply for a timeout.")
    delay_reason = serializers.CharField(
        help_text='Why it was put off, e.g. "outside the sending window" (empty: never delayed).'
    )


def _entry(kind: str, detail: serializers.Serializer) -> type[serializers.Serializer]:
    name = f"Timeline{kind.capitalize()}EntrySerializer"
    return type(
        name,
        (_EntryBase,),
        {"kind": serializers.ChoiceField(choices=[kind]), "detail": detail},
    )


TIMELINE_ENTRY_SERIALIZERS: dict[str, type[serializers.Serializer]] = {
    "enrolled": _entry("enrolled", EnrolledDetailSerializer()),
    "message": _entry("message", MessageDetailSerializer()),
    "event": _entry("event", EventDetailSerializer()),
    "transition": _entry("transition", TransitionDetailSerializer()),
    "scheduled": _entry("scheduled", ScheduledDetailSerializer()),
}


class TimelineSerializer(serializers.Serializer):
    """Documentation of the timeline body (entries are rendered by their kind's serializer)."""

    lead_id = serializers.IntegerField()
    truncated = serializers.BooleanField()
    note = serializers.CharField(allow_blank=True)
    entries = PolymorphicProxySerializer(
        component_name="TimelineEntry",
        serializers=TIMELINE_ENTRY_SERIALIZERS,
        resource_type_field_name="kind",
        many=True,
    )
