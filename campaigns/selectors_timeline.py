"""A lead's story across its enrollments: what was sent, what happened, why it moved.

Six queries whatever the lead's history: the lead, then its enrollments, messages, events,
transitions and live scheduled actions, each capped at the newest ``limit + 1`` rows. The
merged list keeps the newest ``limit`` entries (in chronological order) and says when older
ones were left out. Each source is filtered on the lead itself, never on the capped rows of
another source, so the newest entries are always the right ones.
"""

import datetime
from dataclasses import dataclass, field
from typing import Any

from django.db.models import Subquery

from campaigns.models import Enrollment, EnrollmentTransition, Lead, ScheduledAction
from messaging.models import Message, MessageEvent
from outreach.common.errors import NotFound

TIMELINE_LIMIT = 500
# A lead's events happen after its messages, so after the lead was created; this much earlier
# allows for a provider's clock. The bound lets PostgreSQL skip the monthly event partitions
# older than the lead.
EVENT_CLOCK_SKEW = datetime.timedelta(days=1)

# Ties on the same instant read in cause-and-effect order.
_RANK = {"enrolled": 0, "message": 1, "event": 2, "transition": 3, "scheduled": 4}

_ACTION_LABELS = {
    "send": "send the email of step",
    "advance": "end the wait of step",
    "timeout": "check the timeout of step",
    "resume": "resume the paused journey at step",
}


@dataclass
class TimelineEntry:
    at: datetime.datetime
    kind: str
    id: int
    enrollment_id: int | None
    campaign_id: int | None
    summary: str
    detail: dict[str, Any] = field(default_factory=dict)


@dataclass
class Timeline:
    lead_id: int
    entries: list[TimelineEntry]
    truncated: bool
    limit: int

    @property
    def note(self) -> str:
        if not self.truncated:
            return ""
        return f"Only the latest {self.limit} entries are shown; older history was left out."


def lead_timeline(*, tenant_id: int, lead_id: int, limit: int = TIMELINE_LIMIT) -> Timeline:
    created_at = (
        Lead.objects.for_tenant(tenant_id)
        .filter(pk=lead_id)
        .values_list("created_at", flat=True)
        .first()
    )
    if created_at is None:
        raise NotFound("Lead not found.")
    entries = [
        *_enrollments(tenant_id, lead_id, limit),
        *_messages(tenant_id, lead_id, limit),
        *_events(tenant_id, lead_id, created_at - EVENT_CLOCK_SKEW, limit),
        *_transitions(tenant_id, lead_id, limit),
        *_scheduled(tenant_id, lead_id, limit),
    ]
    entries.sort(key=lambda e: (e.at, _RANK[e.kind], e.id))
    truncated = len(entries) > limit
    return Timeline(
        lead_id=lead_id,
        entries=entries[-limit:] if truncated else entries,
        truncated=truncated,
        limit=limit,
    )


def _enrollments(tenant_id: int, lead_id: int, limit: int) -> list[TimelineEntry]:
    rows = (
        Enrollment.objects.for_tenant(tenant_id)
        .filter(lead_id=lead_id)
        .order_by("-enrolled_at", "-id")
        .values(
            "id",
            "campaign_id",
            "campaign__name",
            "plan_version__version",
            "plan_version__plan__start",
            "state",
            "current_step",
            "outcome",
            "stop_reason",
            "last_error",
            "paused_until",
            "enrolled_at",
            "finished_at",
        )[: limit + 1]
    )
    out = []
    for row in rows:
        summary = (
            f'Enrolled in campaign "{row["campaign__name"]}" on plan version '
            f'{row["plan_version__version"]}, starting at step "{row["plan_version__plan__start"]}"'
        )
        out.append(
            TimelineEntry(
                at=row["enrolled_at"],
                kind="enrolled",
                id=row["id"],
                enrollment_id=row["id"],
                campaign_id=row["campaign_id"],
                summary=summary,
                detail={
                    "campaign_name": row["campaign__name"],
                    "version": row["plan_version__version"],
                    "start_step": row["plan_version__plan__start"] or "",
                    "state": row["state"],
                    "current_step": row["current_step"],
                    "outcome": row["outcome"],
                    "stop_reason": row["stop_reason"],
                    "last_error": row["last_error"],
                    "paused_until": row["paused_until"],
                    "finished_at": row["finished_at"],
                },
            )
        )
    return out


def _message_summary(row: dict) -> str:
    what = f'step "{row["step"]}"'
    if row["variant"]:
        what += f' (variant "{row["variant"]}")'
    status = row["status"]
    if status == Message.Status.SENDING:
        return f"Sending the email of {what}: waiting for SendGrid's answer"
    if status == Message.Status.FAILED:
        reason = row["error_message"] or row["error_code"] or "unknown error"
        return f"The email of {what} failed: {reason}"
    if status == Message.Status.NEEDS_REVIEW:
        return f"The email of {what} may or may not have gone out: held for review"
    return f'Sent the email of {what}, "{row["subject"]}": now {status}'


def _messages(tenant_id: int, lead_id: int, limit: int) -> list[TimelineEntry]:
    rows = (
        Message.objects.for_tenant(tenant_id)
        .filter(lead_id=lead_id)
        .order_by("-created_at", "-id")
        .values(
            "id",
            "public_id",
            "enrollment_id",
            "campaign_id",
            "step",
            "step_seq",
            "variant",
            "attempt",
            "subject",
            "status",
            "to_email",
            "sent_at",
            "provider_message_id",
            "error_code",
            "error_message",
            "created_at",
        )[: limit + 1]
    )
    return [
        TimelineEntry(
            at=row["created_at"],
            kind="message",
            id=row["id"],
            enrollment_id=row["enrollment_id"],
            campaign_id=row["campaign_id"],
            summary=_message_summary(row),
            detail={
                "message_id": row["public_id"],
                "step": row["step"],
                "step_seq": row["step_seq"],
                "variant": row["variant"],
                "attempt": row["attempt"],
                "subject": row["subject"],
                "status": row["status"],
                "to_email": row["to_email"],
                "sent_at": row["sent_at"],
                "provider_message_id": row["provider_message_id"],
                "error_code": row["error_code"],
                "error_message": row["error_message"],
            },
        )
        for row in rows
    ]


def _event_summary(row: dict) -> str:
    step = row["message__step"]
    text = f'{row["event_type"]} on the email of step "{step}"'
    if row["is_synthetic"]:
        return f"{text} (the awaited event did not happen in time)"
    if row["is_machine_open"]:
        return f"{text} (machine open, e.g. Apple Mail privacy: not counted as a human open)"
    if row["is_bot_click"]:
        return f"{text} (likely a link scanner: not counted as a human click)"
    return text


def _events(
    tenant_id: int, lead_id: int, since: datetime.datetime, limit: int
) -> list[TimelineEntry]:
    message_ids = Message.objects.for_tenant(tenant_id).filter(lead_id=lead_id).values("id")
    rows = (
        MessageEvent.objects.filter(
            tenant_id=tenant_id, message_id__in=Subquery(message_ids), occurred_at__gte=since
        )
        .order_by("-occurred_at", "-id")
        .values(
            "id",
            "message_id",
            "message__public_id",
            "message__step",
            "message__campaign_id",
            "enrollment_id",
            "event_type",
            "occurred_at",
            "is_machine_open",
            "is_bot_click",
            "is_synthetic",
        )[: limit + 1]
    )
    return [
        TimelineEntry(
            at=row["occurred_at"],
            kind="event",
            id=row["id"],
            enrollment_id=row["enrollment_id"],
            campaign_id=row["message__campaign_id"],
            summary=_event_summary(row),
            detail={
                "event_id": row["id"],
                "type": row["event_type"],
                "message_id": row["message__public_id"],
                "step": row["message__step"],
                "occurred_at": row["occurred_at"],
                "is_machine_open": row["is_machine_open"],
                "is_bot_click": row["is_bot_click"],
                "is_synthetic": row["is_synthetic"],
            },
        )
        for row in rows
    ]


def _transition_summary(row: dict) -> str:
    cause = f": {row['cause']}" if row["cause"] else ""
    if row["to_step"]:
        return (
            f'Moved from step "{row["from_step"]}" to "{row["to_step"]}" on {row["trigger"]}{cause}'
        )
    return f'Journey ended at step "{row["from_step"]}" on {row["trigger"]}{cause}'


def _transitions(tenant_id: int, lead_id: int, limit: int) -> list[TimelineEntry]:
    rows = (
        EnrollmentTransition.objects.for_tenant(tenant_id)
        .filter(enrollment__lead_id=lead_id)
        .order_by("-created_at", "-id")
        .values(
            "id",
            "enrollment_id",
            "enrollment__campaign_id",
            "from_step",
            "from_seq",
            "to_step",
            "trigger",
            "cause",
            "message__public_id",
            "event_id",
            "created_at",
        )[: limit + 1]
    )
    return [
        TimelineEntry(
            at=row["created_at"],
            kind="transition",
            id=row["id"],
            enrollment_id=row["enrollment_id"],
            campaign_id=row["enrollment__campaign_id"],
            summary=_transition_summary(row),
            detail={
                "from_step": row["from_step"],
                "to_step": row["to_step"],
                "trigger": row["trigger"],
                "cause": row["cause"],
                "message_id": row["message__public_id"],
                "event_id": row["event_id"],
            },
        )
        for row in rows
    ]


def _scheduled_summary(row: dict) -> str:
    label = _ACTION_LABELS.get(row["kind"], row["kind"])
    text = f'Scheduled to {label} "{row["step"]}"'
    if row["kind"] == ScheduledAction.Kind.TIMEOUT and row["payload"].get("trigger"):
        text += f" ({row['payload']['trigger']})"
    if row["status"] == ScheduledAction.Status.CLAIMED:
        text += ": being worked on now"
    if row["last_error"]:
        text += f"; delayed: {row['last_error']}"
    return text


def _scheduled(tenant_id: int, lead_id: int, limit: int) -> list[TimelineEntry]:
    rows = (
        ScheduledAction.objects.for_tenant(tenant_id)
        .filter(
            enrollment__lead_id=lead_id,
            status__in=[ScheduledAction.Status.PENDING, ScheduledAction.Status.CLAIMED],
        )
        .order_by("-due_at", "-id")
        .values(
            "id",
            "enrollment_id",
            "enrollment__campaign_id",
            "kind",
            "step",
            "step_seq",
            "due_at",
            "status",
            "attempt",
            "payload",
            "last_error",
        )[: limit + 1]
    )
    return [
        TimelineEntry(
            at=row["due_at"],
            kind="scheduled",
            id=row["id"],
            enrollment_id=row["enrollment_id"],
            campaign_id=row["enrollment__campaign_id"],
            summary=_scheduled_summary(row),
            detail={
                "action": row["kind"],
                "step": row["step"],
                "due_at": row["due_at"],
                "status": row["status"],
                "timeout": row["payload"].get("trigger", "")
                if row["kind"] == ScheduledAction.Kind.TIMEOUT
                else "",
                "delay_reason": row["last_error"],
            },
        )
        for row in rows
    ]
