"""Inbound mail as the API shows it."""

from typing import Any

from rest_framework import serializers

from messaging.inbound.classify import quoted_history_strip
from messaging.inbound.parse import mime_parse
from messaging.models import InboundMessage


class InboundFilterSerializer(serializers.Serializer):
    matched = serializers.BooleanField(
        required=False,
        allow_null=True,
        default=None,
        help_text="false: only mail we could not tie to a message of ours; true: only matched.",
    )
    classification = serializers.ChoiceField(
        choices=InboundMessage.Classification.choices, required=False
    )


class InboundMessageSerializer(serializers.ModelSerializer):
    matched = serializers.SerializerMethodField()
    matched_message = serializers.SerializerMethodField(
        help_text="public_id of the message this replies to, or null."
    )
    lead = serializers.SerializerMethodField(help_text="Id of the lead who replied, or null.")
    enrollment = serializers.SerializerMethodField()

    class Meta:
        model = InboundMessage
        fields = [
            "id",
            "received_at",
            "processed_at",
            "from_email",
            "to_email",
            "subject",
            "classification",
            "return_date",
            "matched",
            "matched_message",
            "lead",
            "enrollment",
            "message_id_header",
            "in_reply_to",
        ]
        read_only_fields = fields

    def get_matched(self, obj: InboundMessage) -> bool:
        return obj.matched_message_id is not None

    def get_matched_message(self, obj: InboundMessage) -> str | None:
        message = obj.matched_message
        return str(message.public_id) if message else None

    def get_lead(self, obj: InboundMessage) -> int | None:
        return obj.matched_message.lead_id if obj.matched_message else None

    def get_enrollment(self, obj: InboundMessage) -> int | None:
        return obj.matched_message.enrollment_id if obj.matched_message else None


class InboundMessageDetailSerializer(InboundMessageSerializer):
    references = serializers.CharField(read_only=True)
    text = serializers.SerializerMethodField(help_text="The plain-text body as received.")
    new_text = serializers.SerializerMethodField(
        help_text="What the sender wrote now, without the quoted history."
    )

    class Meta(InboundMessageSerializer.Meta):
        fields = [*InboundMessageSerializer.Meta.fields, "references", "text", "new_text"]
        read_only_fields = fields

    def _body(self, obj: InboundMessage) -> str:
        cache: dict[int, Any] = self.context.setdefault("_bodies", {})
        if obj.pk not in cache:
            cache[obj.pk] = mime_parse(raw=obj.raw_mime).body_text if obj.raw_mime else ""
        return cache[obj.pk]

    def get_text(self, obj: InboundMessage) -> str:
        return self._body(obj)

    def get_new_text(self, obj: InboundMessage) -> str:
        return quoted_history_strip(text=self._body(obj))
