"""Shapes of the tenant-controls and audit-log API."""

from rest_framework import serializers

from outreach.common.serializers import StrictBooleanField, StrictCharField, StrictSerializer
from outreach.tenancy.models import AuditEntry, KillSwitch


class ReasonSerializer(StrictSerializer):
    """The optional body of every control action: why, for the audit log."""

    reason = StrictCharField(
        required=False,
        allow_blank=True,
        max_length=2000,
        help_text="Why; kept in the audit log with who and when.",
    )


class FlagsSerializer(serializers.Serializer):
    campaigns = serializers.BooleanField(help_text="Off: every due send is held.")
    event_branching = serializers.BooleanField(
        help_text="Off: events do not move enrollments along their plan's branches."
    )
    analytics = serializers.BooleanField(help_text="Off: the analytics API answers 403.")
    sms = serializers.BooleanField(help_text="Off: plans with SMS steps are refused.")
    inbound = serializers.BooleanField(help_text="Off: replies are not read by Outreach.")
    webhook_shadow_mode = serializers.BooleanField(
        help_text="On: events are stored but neither suppress nor move enrollments."
    )


class QuotasSerializer(serializers.Serializer):
    daily_send_quota = serializers.IntegerField(help_text="Sends per UTC day; more wait.")
    lead_quota = serializers.IntegerField(allow_null=True, help_text="null: no limit.")
    campaign_quota = serializers.IntegerField(allow_null=True, help_text="null: no limit.")


class UsageSerializer(serializers.Serializer):
    sent_today = serializers.IntegerField()
    leads = serializers.IntegerField()
    campaigns = serializers.IntegerField()


class KillSwitchStateSerializer(serializers.Serializer):
    engaged = serializers.BooleanField()
    reason = serializers.CharField()


class TenantControlsSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    name = serializers.CharField()
    slug = serializers.CharField()
    status = serializers.CharField(help_text="active or paused")
    paused_by = serializers.CharField(
        allow_blank=True,
        help_text="Who paused: 'tenant' (this account; it may resume) or 'operator' (the "
        "platform; only the operator can resume). Empty while active.",
    )
    flags = FlagsSerializer()
    quotas = QuotasSerializer()
    usage = UsageSerializer()
    kill_switches = serializers.DictField(
        child=KillSwitchStateSerializer(),
        help_text="The platform's kill switches by channel (all, email, sms); set by operators.",
    )
    sending_stopped_because = serializers.CharField(
        allow_null=True, help_text="Why sends are held right now, or null."
    )


class IdentityHealthSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    from_email = serializers.CharField()
    paused = serializers.BooleanField()
    sent_today = serializers.IntegerField()
    today_ceiling = serializers.IntegerField()
    sent_this_hour = serializers.IntegerField()


class DeliverabilitySerializer(serializers.Serializer):
    sent = serializers.IntegerField()
    spam_rate = serializers.FloatField(allow_null=True)
    spam_status = serializers.CharField()
    bounce_rate = serializers.FloatField(allow_null=True)
    bounce_status = serializers.CharField()


class BacklogSerializer(serializers.Serializer):
    unprocessed = serializers.IntegerField()
    oldest_received_at = serializers.DateTimeField(allow_null=True)
    oldest_age_seconds = serializers.FloatField(allow_null=True)


class MessageHealthSerializer(serializers.Serializer):
    sending_over_5_minutes = serializers.IntegerField()
    sending_past_reconcile_grace = serializers.IntegerField()
    needs_review = serializers.IntegerField()


class TenantHealthSerializer(TenantControlsSerializer):
    checked_at = serializers.DateTimeField()
    sender_identities = IdentityHealthSerializer(many=True)
    deliverability_7d = DeliverabilitySerializer()
    webhooks = serializers.DictField(child=BacklogSerializer())
    messages = MessageHealthSerializer()


class AuditEntrySerializer(serializers.ModelSerializer):
    class Meta:
        model = AuditEntry
        fields = [
            "id",
            "created_at",
            "actor",
            "action",
            "target_type",
            "target_id",
            "reason",
            "before",
            "after",
        ]


class AuditFilterSerializer(serializers.Serializer):
    action = serializers.CharField(required=False, max_length=64, help_text="e.g. campaign.pause")
    target_type = serializers.CharField(
        required=False, max_length=64, help_text="tenant, campaign, sender_identity, lead, …"
    )
    target_id = serializers.CharField(required=False, max_length=64)

    # The pagination's own parameters; anything else is refused by name.
    PAGINATION = frozenset({"cursor", "page_size"})

    def validate(self, attrs: dict) -> dict:
        unknown = sorted(set(self.initial_data) - set(self.fields) - self.PAGINATION)
        if unknown:
            raise serializers.ValidationError({key: ["Unknown filter."] for key in unknown})
        return attrs


class KillSwitchSerializer(serializers.Serializer):
    channel = serializers.CharField(help_text="all, email or sms")
    engaged = serializers.BooleanField(help_text="true: every due send of the channel waits.")
    reason = serializers.CharField(help_text="Why, as given by whoever changed it last.")
    changed_by = serializers.CharField(help_text="Who changed it last (the audit log's actor).")
    changed_at = serializers.DateTimeField(allow_null=True)
    history = AuditEntrySerializer(
        many=True, help_text="The latest changes of this switch, newest first."
    )


class KillSwitchListSerializer(serializers.Serializer):
    results = KillSwitchSerializer(many=True)


class KillSwitchChangeSerializer(StrictSerializer):
    """Engage or release one channel's kill switch; the reason is required either way."""

    channel = serializers.ChoiceField(
        choices=KillSwitch.Channel.values, help_text="all, email or sms"
    )
    engaged = StrictBooleanField(help_text="true to engage (hold sends), false to release.")
    reason = StrictCharField(
        max_length=2000,
        help_text="Why: required; the next operator reads it in the audit log.",
    )
