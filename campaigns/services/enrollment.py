"""Enrolling leads: the enrollment rows and their first scheduled actions in one transaction."""

import datetime
import logging
from dataclasses import dataclass, field

from django.db import connection, transaction
from django.utils import timezone

from campaigns.models import Campaign, Enrollment, Lead
from campaigns.services import engine, scheduler, timing
from outreach.common.errors import ApplicationError, NotFound
from suppression.selectors import suppression_check

logger = logging.getLogger(__name__)

MAX_LEADS_PER_CALL = 10_000


@dataclass
class EnrollResult:
    enrolled: list[dict] = field(default_factory=list)
    skipped: list[dict] = field(default_factory=list)


def enrollments_create(
    *,
    tenant_id: int,
    campaign_id: int,
    lead_ids: list[int] | None = None,
    emails: list[str] | None = None,
) -> EnrollResult:
    """Enroll leads (by id or email) in a campaign's current plan version.

    Each lead is enrolled or skipped with a reason a user can act on: ``not_found``,
    ``invalid`` (its address failed validation), ``suppressed``, ``already_enrolled``.
    The enrollment and its first scheduled action commit together, so a crash never leaves
    an enrollment that nothing will ever advance.
    """
    lead_ids = list(dict.fromkeys(lead_ids or []))
    emails = list(dict.fromkeys(e.strip().lower() for e in (emails or []) if isinstance(e, str)))
    if not lead_ids and not emails:
        raise ApplicationError(
            "give lead_ids or emails",
            code="invalid",
            extra={"lead_ids": ["give at least one lead"]},
        )
    if len(lead_ids) + len(emails) > MAX_LEADS_PER_CALL:
        raise ApplicationError(
            f"at most {MAX_LEADS_PER_CALL} leads per call",
            code="too_many",
            extra={"lead_ids": [f"at most {MAX_LEADS_PER_CALL} leads per call"]},
        )
    result = EnrollResult()
    now = timezone.now()
    with transaction.atomic(durable=True):
        campaign = (
            Campaign.objects.for_tenant(tenant_id)
            .select_related("current_version", "sender_identity")
            .filter(pk=campaign_id)
            .first()
        )
        if campaign is None:
            raise NotFound("Campaign not found.")
        if campaign.current_version is None:
            raise ApplicationError(
                "the campaign has no published plan version; publish one first",
                code="not_published",
            )
        if campaign.status == Campaign.Status.ARCHIVED:
            raise ApplicationError("the campaign is archived", code="archived")

        leads: dict[int, Lead] = {}
        if lead_ids:
            found = Lead.objects.for_tenant(tenant_id).in_bulk(lead_ids)
            leads.update(found)
            for missing in sorted(set(lead_ids) - set(found)):
                result.skipped.append({"lead_id": missing, "reason": "not_found"})
        if emails:
            by_email = {
                lead.email: lead
                for lead in Lead.objects.for_tenant(tenant_id).filter(email__in=emails)
            }
            for email in emails:
                lead = by_email.get(email)
                if lead is None:
                    result.skipped.append({"email": email, "reason": "not_found"})
                else:
                    leads[lead.pk] = lead

        suppressed = suppression_check(
            tenant_id=tenant_id, emails=[lead.email for lead in leads.values()]
        )
        candidates: list[Lead] = []
        for lead in leads.values():
            if lead.validation_status == Lead.Validation.INVALID:
                result.skipped.append(
                    {
                        "lead_id": lead.pk,
                        "email": lead.email,
                        "reason": "invalid",
                        "detail": lead.validation_reason,
                    }
                )
            elif lead.email in suppressed:
                result.skipped.append(
                    {"lead_id": lead.pk, "email": lead.email, "reason": "suppressed"}
                )
            else:
                candidates.append(lead)

        inserted = _insert(campaign, candidates, now)
        by_lead = dict(inserted)
        for lead in candidates:
            if lead.pk in by_lead:
                result.enrolled.append(
                    {"lead_id": lead.pk, "email": lead.email, "enrollment_id": by_lead[lead.pk]}
                )
            else:
                result.skipped.append(
                    {"lead_id": lead.pk, "email": lead.email, "reason": "already_enrolled"}
                )
        _schedule_first_steps(
            campaign, [lead for lead in candidates if lead.pk in by_lead], by_lead, now
        )
    logger.info(
        "enrollments.created",
        extra={
            "tenant_id": tenant_id,
            "campaign_id": campaign_id,
            "enrolled": len(result.enrolled),
            "skipped": len(result.skipped),
        },
    )
    return result


def _insert(campaign: Campaign, leads: list[Lead], now: datetime.datetime) -> list[tuple[int, int]]:
    """Insert live enrollments; a lead already live in this campaign is refused by the
    partial unique index and simply not returned."""
    if not leads:
        return []
    start = campaign.current_version.plan.get("start", "")
    lead_ids = [lead.pk for lead in leads]
    out: list[tuple[int, int]] = []
    with connection.cursor() as cursor:
        for offset in range(0, len(lead_ids), 5000):
            cursor.execute(
                """
                INSERT INTO campaigns_enrollment
                    (tenant_id, campaign_id, lead_id, plan_version_id, sender_identity_id, state,
                     current_step, step_seq, step_entered_at, outcome, stop_reason, last_error,
                     paused_until, enrolled_at, updated_at, finished_at)
                SELECT %s, %s, u.lead_id, %s, %s, 'active', %s, 1, now(), '', '', '', NULL,
                       now(), now(), NULL
                FROM unnest(%s::bigint[]) AS u(lead_id)
                ON CONFLICT DO NOTHING
                RETURNING lead_id, id
                """,
                [
                    campaign.tenant_id,
                    campaign.pk,
                    campaign.current_version_id,
                    campaign.sender_identity_id,
                    start,
                    lead_ids[offset : offset + 5000],
                ],
            )
            out.extend(cursor.fetchall())
    return out


def _schedule_first_steps(
    campaign: Campaign, leads: list[Lead], enrollment_ids: dict[int, int], now: datetime.datetime
) -> None:
    plan = campaign.current_version.plan
    start = plan.get("start", "")
    step = engine.step_get(plan, start)
    kind = step.get("type")
    identity = campaign.sender_identity
    actions: list[scheduler.NewAction] = []
    for lead in leads:
        enrollment_id = enrollment_ids[lead.pk]
        context = timing.LeadTiming(
            timezone=lead.timezone or identity.timezone, country=lead.country, identity=identity
        )
        if kind == "email":
            due = timing.send_time_next(
                context=context, earliest=now, jitter_key=f"{enrollment_id}:1"
            )
            action_kind, priority = "send", engine.PRIORITY_FIRST_TOUCH
        elif kind == "sms":
            due = timing.sms_send_time_next(
                context=context, earliest=now, jitter_key=f"{enrollment_id}:1"
            )
            action_kind, priority = "sms", engine.PRIORITY_FIRST_TOUCH
        elif kind == "wait":
            due = timing.duration_add(
                context=context, start=now, duration=step.get("duration", "0m")
            )
            action_kind, priority = "advance", 1
        else:
            continue
        actions.append(
            scheduler.NewAction(
                tenant_id=campaign.tenant_id,
                enrollment_id=enrollment_id,
                kind=action_kind,
                step=start,
                step_seq=1,
                due_at=due,
                priority=priority,
                idempotency_key=f"{enrollment_id}:1:{action_kind}",
            )
        )
    scheduler.scheduled_actions_create(actions=actions)
    if kind == "end":
        Enrollment.objects.filter(pk__in=list(enrollment_ids.values())).update(
            state=Enrollment.State.COMPLETED,
            outcome=str(step.get("outcome", ""))[:100],
            finished_at=now,
        )
