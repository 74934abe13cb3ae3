"""A tenant's data as a zip of JSON Lines files, one per table (``manage.py tenant_export``).

Everything the tenant owns, read through the ORM in primary-key order, streamed row by row
(a tenant with millions of events does not need the memory for them). Secrets are left
out: the stored SendGrid key, the inbound secret and the API keys (hashes) never leave.
"""

import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from django.core.serializers.json import DjangoJSONEncoder
from django.db.models import Model, QuerySet

SECRET_FIELDS = {"sendgrid_api_key_encrypted", "inbound_secret"}


@dataclass(frozen=True)
class ExportTable:
    name: str
    queryset: Callable[[int], QuerySet]


def export_tables() -> list[ExportTable]:
    from campaigns.models import (
        Campaign,
        CampaignPlanVersion,
        Enrollment,
        EnrollmentTransition,
        Lead,
    )
    from messaging.models import InboundMessage, Message, MessageEvent, SenderIdentity
    from outreach.tenancy.models import AuditEntry, Tenant
    from suppression.models import Suppression

    def owned(model: type[Model]) -> Callable[[int], QuerySet]:
        return lambda tenant_id: model.objects.filter(tenant_id=tenant_id).order_by("pk")

    return [
        ExportTable("tenant", lambda tenant_id: Tenant.objects.filter(pk=tenant_id)),
        ExportTable("sender_identities", owned(SenderIdentity)),
        ExportTable("leads", owned(Lead)),
        ExportTable("campaigns", owned(Campaign)),
        ExportTable("campaign_plan_versions", owned(CampaignPlanVersion)),
        ExportTable("enrollments", owned(Enrollment)),
        ExportTable("enrollment_transitions", owned(EnrollmentTransition)),
        ExportTable("messages", owned(Message)),
        ExportTable(
            "message_events",
            lambda tenant_id: MessageEvent.objects.filter(tenant_id=tenant_id).order_by("id"),
        ),
        ExportTable("inbound_messages", owned(InboundMessage)),
        ExportTable("suppressions", owned(Suppression)),
        ExportTable("audit_log", owned(AuditEntry)),
    ]


def export_rows(table: ExportTable, *, tenant_id: int) -> Iterator[str]:
    """One JSON line per row of the table for the tenant, secrets left out."""
    for row in table.queryset(tenant_id).values().iterator(chunk_size=2000):
        clean: dict[str, Any] = {k: v for k, v in row.items() if k not in SECRET_FIELDS}
        yield json.dumps(clean, cls=DjangoJSONEncoder, ensure_ascii=False, sort_keys=True) + "\n"
