"""One row of every model for a tenant: admin pages and cross-tenant tests need data present."""

import datetime
from dataclasses import dataclass

from django.utils import timezone

from campaigns.models import (
    Campaign,
    CampaignPlanVersion,
    Enrollment,
    EnrollmentTransition,
    Lead,
    ScheduledAction,
)
from messaging.models import (
    EmailVerdict,
    InboundMessage,
    Message,
    MessageEvent,
    MessageEventKey,
    SenderIdentity,
    WebhookReceipt,
)
from outreach.tenancy.audit import audit_record
from outreach.tenancy.models import AuditEntry, KillSwitch, Tenant, TenantAlert
from outreach.testing.factories import LeadFactory, SenderIdentityFactory, campaign_with_plan
from suppression.models import Suppression

PLAN = {"start": "intro", "steps": {"intro": {"type": "end", "outcome": "done"}}}


@dataclass
class World:
    tenant: Tenant
    lead: Lead
    identity: SenderIdentity
    campaign: Campaign
    version: CampaignPlanVersion
    enrollment: Enrollment
    transition: EnrollmentTransition
    action: ScheduledAction
    message: Message
    event: MessageEvent
    event_key: MessageEventKey
    receipt: WebhookReceipt
    inbound: InboundMessage
    verdict: EmailVerdict
    suppression: Suppression
    alert: TenantAlert
    audit: AuditEntry
    kill_switch: KillSwitch


def world_build(*, tenant: Tenant) -> World:
    now = timezone.now()
    identity = SenderIdentityFactory(tenant=tenant)
    lead = LeadFactory(tenant=tenant)
    campaign = campaign_with_plan(tenant=tenant, plan=PLAN, identity=identity)
    enrollment = Enrollment.objects.create(
        tenant=tenant,
        campaign=campaign,
        lead=lead,
        plan_version=campaign.current_version,
        sender_identity=identity,
        current_step="intro",
        step_seq=1,
    )
    message = Message.objects.create(
        tenant=tenant,
        sender_identity=identity,
        enrollment=enrollment,
        lead=lead,
        campaign=campaign,
        plan_version=enrollment.plan_version,
        step="intro",
        step_seq=1,
        to_email=lead.email,
        subject="Hello there",
        status=Message.Status.DELIVERED,
        provider_message_id=f"sg-{tenant.pk}-{lead.pk}",
        sent_at=now,
    )
    transition = EnrollmentTransition.objects.create(
        tenant=tenant,
        enrollment=enrollment,
        from_step="intro",
        from_seq=1,
        to_step="",
        trigger="delivered",
        message=message,
    )
    action = ScheduledAction.objects.create(
        tenant=tenant,
        enrollment=enrollment,
        kind=ScheduledAction.Kind.SEND,
        step="intro",
        step_seq=1,
        due_at=now + datetime.timedelta(hours=1),
        idempotency_key=f"world-{tenant.pk}-{enrollment.pk}",
    )
    receipt = WebhookReceipt.objects.create(
        tenant=tenant,
        kind=WebhookReceipt.Kind.EVENTS,
        body=b'[{"event": "delivered"}]',
        headers={"Content-Type": "application/json"},
        content_type="application/json",
    )
    event = MessageEvent.objects.create(
        tenant=tenant,
        message=message,
        enrollment=enrollment,
        event_type="delivered",
        occurred_at=now,
        received_at=now,
        provider_event_id=f"evt-{tenant.pk}-{message.pk}",
        provider_message_id=message.provider_message_id,
        email=lead.email,
        receipt_id=receipt.pk,
        raw={"event": "delivered"},
    )
    event_key = MessageEventKey.objects.create(
        tenant=tenant, provider_event_id=event.provider_event_id
    )
    inbound = InboundMessage.objects.create(
        tenant=tenant,
        from_email=lead.email,
        to_email=identity.from_email,
        subject="Re: Hello there",
        matched_message=message,
        classification=InboundMessage.Classification.HUMAN,
    )
    verdict = EmailVerdict.objects.create(tenant=tenant, email=lead.email, verdict="valid")
    suppression = Suppression.objects.create(
        tenant=tenant,
        scope=Suppression.Scope.TENANT,
        email=f"gone-{tenant.pk}@prospect.example.com",
        reason=Suppression.Reason.UNSUBSCRIBE,
        source=Suppression.Source.API,
    )
    alert = TenantAlert.objects.create(
        tenant=tenant, kind=TenantAlert.Kind.WEBHOOK, message="Webhook signature failures"
    )
    audit = audit_record(
        tenant_id=tenant.pk,
        actor="admin:world",
        action="tenant.pause",
        target_type="tenant",
        target_id=tenant.pk,
        reason="world",
        before={"status": "active"},
        after={"status": "paused"},
    )
    # Platform-wide, released: present for the admin pages, holding nothing.
    kill_switch, _ = KillSwitch.objects.get_or_create(channel=KillSwitch.Channel.SMS)
    return World(
        tenant=tenant,
        lead=lead,
        identity=identity,
        campaign=campaign,
        version=campaign.current_version,
        enrollment=enrollment,
        transition=transition,
        action=action,
        message=message,
        event=event,
        event_key=event_key,
        receipt=receipt,
        inbound=inbound,
        verdict=verdict,
        suppression=suppression,
        alert=alert,
        audit=audit,
        kill_switch=kill_switch,
    )
