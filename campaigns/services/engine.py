"""The campaign state machine: entering steps, leaving them exactly once, stopping.

Every function here runs inside the caller's transaction with the enrollment row locked
(``SELECT … FOR UPDATE``). Exactly-once transitions rest on one constraint:
``EnrollmentTransition`` is unique on ``(enrollment, from_seq)`` — whichever path (a webhook
event, a timeout, a finished wait) inserts that row first moves the enrollment; every other
path finds the insert refused and does nothing.
"""

import datetime
import hashlib
import logging
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from django.db import connection
from django.utils import timezone

from campaigns.models import Enrollment, EnrollmentTransition
from campaigns.services import scheduler, timing

logger = logging.getLogger(__name__)

# Triggers that end the journey whatever the plan says: the lead asked us to stop, or the
# address cannot receive mail.
STOPPING_TRIGGERS = {
    "bounce",
    "spamreport",
    "unsubscribe",
    "group_unsubscribe",
    "dropped",
    "sms_stop",
}
TIMEOUT_TRIGGERS = {"no_open", "no_click", "no_reply"}
# The event a timeout waits for: a timeout fires only if this has not happened.
TIMEOUT_AWAITS = {"no_open": "open", "no_click": "click", "no_reply": "reply"}
# The stored event types that are each awaited event (a text message's reply is its own type,
# so SMS never counts in the email figures).
AWAITED_EVENT_TYPES = {"open": ("open",), "click": ("click",), "reply": ("reply", "sms_reply")}
PRIORITY_FOLLOW_UP = 0
PRIORITY_FIRST_TOUCH = 1


@dataclass(frozen=True)
class StepEdge:
    trigger: str
    target: str | None
    after: str | None = None


def plan_steps(plan: dict) -> dict:
    return plan.get("steps", {})


def step_get(plan: dict, name: str) -> dict:
    return plan_steps(plan).get(name) or {}


def step_edges(step: dict) -> list[StepEdge]:
    """The ``on`` map of a step as edges; a timeout is ``{"after": ..., "to"/"next": ...}``."""
    edges = []
    for trigger, spec in (step.get("on") or {}).items():
        if isinstance(spec, dict):
            edges.append(
                StepEdge(
                    trigger,
                    spec.get("to") or spec.get("next") or spec.get("goto"),
                    spec.get("after"),
                )
            )
        else:
            edges.append(StepEdge(trigger, spec))
    return edges


def step_edge(step: dict, trigger: str) -> StepEdge | None:
    for edge in step_edges(step):
        if edge.trigger == trigger:
            return edge
    return None


def _lead_context(enrollment: Enrollment) -> timing.LeadTiming:
    lead = enrollment.lead
    identity = enrollment.sender_identity
    return timing.LeadTiming(
        timezone=lead.timezone or identity.timezone,
        country=lead.country or "",
        identity=identity,
    )


def _jitter_key(enrollment: Enrollment, step_seq: int) -> str:
    return f"{enrollment.pk}:{step_seq}"


def enrollment_enter_step(
    *, enrollment: Enrollment, step_name: str, step_seq: int, now: datetime.datetime
) -> None:
    """Make ``step_name`` current (entry number ``step_seq``) and schedule what it needs."""
    fields, actions = _step_enter(enrollment, step_name, step_seq, now)
    if actions:
        scheduler.scheduled_actions_create(actions=actions)
    enrollment.save(update_fields=fields)


def _step_enter(
    enrollment: Enrollment, step_name: str, step_seq: int, now: datetime.datetime
) -> tuple[list[str], list[scheduler.NewAction]]:
    """``enrollment_enter_step`` in memory: the fields it changed and the actions it needs."""
    actions: list[scheduler.NewAction] = []
    plan = enrollment.plan_version.plan
    step = step_get(plan, step_name)
    kind = step.get("type")
    enrollment.current_step = step_name
    enrollment.step_seq = step_seq
    enrollment.step_entered_at = now
    fields = ["current_step", "step_seq", "step_entered_at", "updated_at"]

    if kind == "email":
        due = timing.send_time_next(
            context=_lead_context(enrollment),
            earliest=now,
            jitter_key=_jitter_key(enrollment, step_seq),
        )
        priority = PRIORITY_FIRST_TOUCH if step_seq <= 1 else PRIORITY_FOLLOW_UP
        actions.append(_new_action(enrollment, "send", step_name, step_seq, due, priority=priority))
    elif kind == "sms":
        due = timing.sms_send_time_next(
            context=_lead_context(enrollment),
            earliest=now,
            jitter_key=_jitter_key(enrollment, step_seq),
        )
        priority = PRIORITY_FIRST_TOUCH if step_seq <= 1 else PRIORITY_FOLLOW_UP
        actions.append(_new_action(enrollment, "sms", step_name, step_seq, due, priority=priority))
    elif kind == "wait":
        due = timing.duration_add(
            context=_lead_context(enrollment), start=now, duration=step.get("duration", "0m")
        )
        actions.append(_new_action(enrollment, "advance", step_name, step_seq, due))
    elif kind == "end":
        enrollment.state = Enrollment.State.COMPLETED
        enrollment.outcome = str(step.get("outcome", ""))[:100]
        enrollment.finished_at = now
        fields += ["state", "outcome", "finished_at"]
    else:
        enrollment.state = Enrollment.State.FAILED
        enrollment.last_error = (
            f"step {step_name!r} has type {kind!r}, which this engine cannot run"
        )
        enrollment.finished_at = now
        fields += ["state", "last_error", "finished_at"]
    return fields, actions


def _new_action(
    enrollment: Enrollment,
    kind: str,
    step: str,
    step_seq: int,
    due_at: datetime.datetime,
    *,
    priority: int = 1,
    payload: dict | None = None,
    key_suffix: str = "",
) -> scheduler.NewAction:
    return scheduler.NewAction(
        tenant_id=enrollment.tenant_id,
        enrollment_id=enrollment.pk,
        kind=kind,
        step=step,
        step_seq=step_seq,
        due_at=due_at,
        priority=priority,
        payload=payload,
        idempotency_key=f"{enrollment.pk}:{step_seq}:{kind}{key_suffix}",
    )


def _schedule(
    enrollment: Enrollment,
    kind: str,
    step: str,
    step_seq: int,
    due_at: datetime.datetime,
    *,
    priority: int = 1,
    payload: dict | None = None,
    key_suffix: str = "",
) -> None:
    scheduler.scheduled_actions_create(
        actions=[
            _new_action(
                enrollment,
                kind,
                step,
                step_seq,
                due_at,
                priority=priority,
                payload=payload,
                key_suffix=key_suffix,
            )
        ]
    )


def enrollment_transition(
    *,
    enrollment: Enrollment,
    from_seq: int,
    trigger: str,
    to_step: str | None,
    cause: str,
    now: datetime.datetime,
    message_id: int | None = None,
    event_id: int | None = None,
) -> bool:
    """Leave step entry ``from_seq`` by ``trigger``. Returns False if it was already left.

    ``to_step`` None ends the journey as completed (the plan had nowhere further to go).
    """
    if enrollment.step_seq != from_seq or enrollment.state not in (
        Enrollment.State.ACTIVE,
        Enrollment.State.PAUSED,
    ):
        return False
    if not _transition_record(
        enrollment, from_seq, trigger, to_step or "", cause, message_id, event_id
    ):
        return False
    scheduler.scheduled_actions_cancel(enrollment_id=enrollment.pk, step_seq=from_seq)
    if to_step:
        enrollment_enter_step(
            enrollment=enrollment, step_name=to_step, step_seq=from_seq + 1, now=now
        )
    else:
        enrollment.state = Enrollment.State.COMPLETED
        enrollment.outcome = enrollment.outcome or trigger
        enrollment.finished_at = now
        enrollment.save(update_fields=["state", "outcome", "finished_at", "updated_at"])
    logger.info(
        "enrollment.transition",
        extra={
            "tenant_id": enrollment.tenant_id,
            "enrollment_id": enrollment.pk,
            "trigger": trigger,
            "to_step": to_step,
        },
    )
    return True


def enrollment_stop(
    *,
    enrollment: Enrollment,
    trigger: str,
    reason: str,
    now: datetime.datetime,
    state: str = Enrollment.State.STOPPED,
    message_id: int | None = None,
    event_id: int | None = None,
    outcome: str = "",
) -> bool:
    """End the journey now (bounce, complaint, unsubscribe, suppression, reply, failure).

    ``outcome`` is the label of the end step a plan names for this trigger (a plan may route
    ``bounce`` or ``unsubscribe`` only to an end step), kept for reporting."""
    if enrollment.state not in (Enrollment.State.ACTIVE, Enrollment.State.PAUSED):
        return False
    if not _transition_record(
        enrollment, enrollment.step_seq, trigger, "", reason, message_id, event_id
    ):
        return False
    scheduler.scheduled_actions_cancel(enrollment_id=enrollment.pk)
    enrollment.state = state
    enrollment.stop_reason = reason[:200]
    enrollment.finished_at = now
    fields = ["state", "stop_reason", "finished_at", "updated_at"]
    if outcome:
        enrollment.outcome = outcome[:100]
        fields.append("outcome")
    if state == Enrollment.State.FAILED:
        enrollment.last_error = reason
        fields.append("last_error")
    enrollment.save(update_fields=fields)
    logger.info(
        "enrollment.stopped",
        extra={"tenant_id": enrollment.tenant_id, "enrollment_id": enrollment.pk, "reason": reason},
    )
    return True


def _transition_record(
    enrollment: Enrollment,
    from_seq: int,
    trigger: str,
    to_step: str,
    cause: str,
    message_id: int | None,
    event_id: int | None,
) -> bool:
    with connection.cursor() as cursor:
        cursor.execute(
            """
            INSERT INTO campaigns_enrollmenttransition
                (tenant_id, enrollment_id, from_step, from_seq, to_step, trigger, cause,
                 message_id, event_id, created_at)
            VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, now())
            ON CONFLICT (enrollment_id, from_seq) DO NOTHING
            """,
            [
                enrollment.tenant_id,
                enrollment.pk,
                enrollment.current_step,
                from_seq,
                to_step,
                trigger,
                cause[:300],
                message_id,
                event_id,
            ],
        )
        return cursor.rowcount == 1


def enrollment_after_send(
    *, enrollment: Enrollment, step_seq: int, sent_at: datetime.datetime, message_id: int
) -> None:
    """A step's email was accepted: arm its timeouts, or move on if it awaits nothing."""
    enrollments_after_send(sent=[SentStep(enrollment, step_seq, message_id)], sent_at=sent_at)


@dataclass(frozen=True)
class SentStep:
    """One accepted send of a batch: the enrollment (locked), its step entry, the message."""

    enrollment: Enrollment
    step_seq: int
    message_id: int


def enrollments_after_send(*, sent: list[SentStep], sent_at: datetime.datetime) -> None:
    """``enrollment_after_send`` for a batch, every enrollment locked by the caller.

    The decisions are the same, enrollment by enrollment; the writes are set-based: the
    timeouts of all steps armed with one insert, and the steps that wait for nothing left
    through ``_transitions_record_many`` (one insert, one cancel, one insert of the next
    steps' actions, one update of the enrollments) instead of a few statements each.
    """
    timeouts: list[scheduler.NewAction] = []
    moving: list[tuple[SentStep, str | None]] = []
    for item in sent:
        enrollment = item.enrollment
        if enrollment.step_seq != item.step_seq or enrollment.state != Enrollment.State.ACTIVE:
            continue
        step = step_get(enrollment.plan_version.plan, enrollment.current_step)
        edges = step_edges(step)
        for edge in edges:
            if edge.trigger in TIMEOUT_TRIGGERS and edge.after:
                due = timing.duration_add(
                    context=_lead_context(enrollment), start=sent_at, duration=edge.after
                )
                timeouts.append(
                    _new_action(
                        enrollment,
                        "timeout",
                        enrollment.current_step,
                        item.step_seq,
                        due,
                        payload={"trigger": edge.trigger, "message_id": item.message_id},
                        key_suffix=f":{edge.trigger}",
                    )
                )
        if not edges:
            moving.append((item, step.get("next")))
    if timeouts:
        scheduler.scheduled_actions_create(actions=timeouts)
    if moving:
        _transitions_record_many(
            moving,
            trigger="sent",
            cause="email sent; the step waits for nothing",
            now=timezone.now(),
        )


def _transitions_record_many(
    moving: list[tuple[SentStep, str | None]], *, trigger: str, cause: str, now: datetime.datetime
) -> None:
    """``enrollment_transition`` for many step entries (all current, enrollments locked):
    the unique ``(enrollment, from_seq)`` still decides, row by row, which ones move."""
    with connection.cursor() as cursor:
        cursor.execute(
            """
            INSERT INTO campaigns_enrollmenttransition
                (tenant_id, enrollment_id, from_step, from_seq, to_step, trigger, cause,
                 message_id, event_id, created_at)
            SELECT u.tenant_id, u.enrollment_id, u.from_step, u.from_seq, u.to_step, %s, %s,
                   u.message_id, NULL, now()
            FROM unnest(%s::bigint[], %s::bigint[], %s::text[], %s::int[], %s::text[],
                        %s::bigint[])
                AS u(tenant_id, enrollment_id, from_step, from_seq, to_step, message_id)
            ORDER BY u.enrollment_id
            ON CONFLICT (enrollment_id, from_seq) DO NOTHING
            RETURNING enrollment_id
            """,
            [
                trigger,
                cause[:300],
                [item.enrollment.tenant_id for item, _ in moving],
                [item.enrollment.pk for item, _ in moving],
                [item.enrollment.current_step for item, _ in moving],
                [item.step_seq for item, _ in moving],
                [to_step or "" for _, to_step in moving],
                [item.message_id for item, _ in moving],
            ],
        )
        won = {row[0] for row in cursor.fetchall()}
    winners = [(item, to_step) for item, to_step in moving if item.enrollment.pk in won]
    if not winners:
        return
    scheduler.scheduled_actions_cancel_steps(
        steps=[(item.enrollment.pk, item.step_seq) for item, _ in winners]
    )
    actions: list[scheduler.NewAction] = []
    for item, to_step in winners:
        enrollment = item.enrollment
        if to_step:
            _, entered = _step_enter(enrollment, to_step, item.step_seq + 1, now)
            actions += entered
        else:
            enrollment.state = Enrollment.State.COMPLETED
            enrollment.outcome = enrollment.outcome or trigger
            enrollment.finished_at = now
    if actions:
        scheduler.scheduled_actions_create(actions=actions)
    _enrollments_write([item.enrollment for item, _ in winners], now)
    for item, to_step in winners:
        logger.info(
            "enrollment.transition",
            extra={
                "tenant_id": item.enrollment.tenant_id,
                "enrollment_id": item.enrollment.pk,
                "trigger": trigger,
                "to_step": to_step,
            },
        )


def _enrollments_write(enrollments: list[Enrollment], now: datetime.datetime) -> None:
    """Write what entering a step or completing may change, for locked enrollments, in one
    statement (the rows are locked, so the other columns are as read)."""
    for enrollment in enrollments:
        enrollment.updated_at = now
    with connection.cursor() as cursor:
        cursor.execute(
            """
            UPDATE campaigns_enrollment AS e
            SET current_step = u.current_step, step_seq = u.step_seq,
                step_entered_at = u.step_entered_at, state = u.state, outcome = u.outcome,
                finished_at = u.finished_at, last_error = u.last_error, updated_at = %s
            FROM unnest(%s::bigint[], %s::text[], %s::int[], %s::timestamptz[], %s::text[],
                        %s::text[], %s::timestamptz[], %s::text[])
                AS u(id, current_step, step_seq, step_entered_at, state, outcome, finished_at,
                     last_error)
            WHERE e.id = u.id
            """,
            [
                now,
                [e.pk for e in enrollments],
                [e.current_step for e in enrollments],
                [e.step_seq for e in enrollments],
                [e.step_entered_at for e in enrollments],
                [e.state for e in enrollments],
                [e.outcome for e in enrollments],
                [e.finished_at for e in enrollments],
                [e.last_error for e in enrollments],
            ],
        )


def enrollment_locked(*, enrollment_id: int) -> Enrollment | None:
    return (
        Enrollment.objects.select_for_update(of=("self",))
        .select_related("plan_version", "lead", "sender_identity", "campaign", "tenant")
        .filter(pk=enrollment_id)
        .first()
    )


_ENROLLMENT_RELATED = ("lead", "plan_version", "sender_identity", "campaign", "tenant")


def enrollments_locked(
    *, enrollment_ids: list[int], loaded: Iterable[Enrollment] = ()
) -> dict[int, Enrollment]:
    """``enrollment_locked`` for many, by id: rows locked in id order so two callers sharing
    enrollments never deadlock.

    The enrollments come with their lead (joined); plan versions, identities, campaigns and
    tenants, which a batch shares, are read once each and shared by the enrollments that
    name them, instead of being joined (and the plan's JSON decoded) for every row.
    ``loaded``: enrollments read earlier (a send batch's prepare phase) whose related
    objects may be reused as they are; their own rows are still re-read under the lock.
    """
    known: dict[str, dict[int, Any]] = {name: {} for name in _ENROLLMENT_RELATED}
    fields = {name: Enrollment._meta.get_field(name) for name in _ENROLLMENT_RELATED}
    for enrollment in loaded:
        for name, field in fields.items():
            if field.is_cached(enrollment):
                related = field.get_cached_value(enrollment)
                known[name][related.pk] = related
    query = (
        Enrollment.objects.select_for_update(of=("self",))
        .filter(pk__in=sorted(set(enrollment_ids)))
        .order_by("pk")
    )
    rows = list(query.select_related("lead") if not known["lead"] else query)
    for name, field in fields.items():
        cache = known[name]
        wanted = {getattr(e, field.attname) for e in rows if not field.is_cached(e)}
        missing = wanted - cache.keys()
        if missing:
            cache.update(field.related_model._base_manager.in_bulk(list(missing)))
        for enrollment in rows:
            if not field.is_cached(enrollment):
                field.set_cached_value(enrollment, cache[getattr(enrollment, field.attname)])
    return {enrollment.pk: enrollment for enrollment in rows}


def variant_pick(*, step: dict, key: str) -> dict:
    """Deterministic weighted A/B choice: the same enrollment and step always get one variant."""
    variants = step.get("variants") or []
    if len(variants) <= 1:
        return variants[0] if variants else {}
    weights = [max(int(v.get("weight", 1)), 0) for v in variants]
    total = sum(weights) or len(variants)
    point = int.from_bytes(hashlib.sha256(key.encode()).digest()[:8], "big") % total
    for variant, weight in zip(variants, weights, strict=True):
        if point < weight:
            return variant
        point -= weight
    return variants[-1]


__all__ = [
    "EnrollmentTransition",
    "SentStep",
    "enrollment_after_send",
    "enrollment_enter_step",
    "enrollment_locked",
    "enrollment_stop",
    "enrollment_transition",
    "enrollments_after_send",
    "enrollments_locked",
    "step_edge",
    "step_edges",
    "step_get",
    "variant_pick",
]
