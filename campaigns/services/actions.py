"""Running claimed scheduled actions of the campaign side: waits, timeouts, resumes.

Each action runs in its own transaction: the row is re-read ``FOR UPDATE`` with the attempt
the sweeper handed out (fencing), the enrollment is locked, and the outcome — a transition, a
reschedule, or nothing — commits together with the action's deletion.
"""

import datetime
import logging

from django.db import connection, transaction
from django.utils import timezone
from psycopg import sql

from campaigns.models import Enrollment, ScheduledAction
from campaigns.services import engine, scheduler
from messaging.services.engagement import message_event_exists, message_event_synthetic_record

logger = logging.getLogger(__name__)


def scheduled_action_held(*, action_id: int, attempt: int) -> ScheduledAction | None:
    """The action, locked, if this attempt still owns it; None for a stale or repeated hint."""
    return (
        ScheduledAction.objects.select_for_update()
        .filter(pk=action_id, attempt=attempt, status=ScheduledAction.Status.CLAIMED)
        .first()
    )


def scheduled_actions_held(*, items: list[list[int]]) -> dict[int, ScheduledAction]:
    """``scheduled_action_held`` for a batch (``[[action_id, attempt], ...]``), by id: one
    query, rows locked in id order so two workers holding overlapping batches (a hint
    delivered twice) never deadlock. Actions a newer attempt owns are left out, unlocked."""
    if not items:
        return {}
    rows = ScheduledAction.objects.raw(
        """
        SELECT a.* FROM campaigns_scheduledaction AS a
        JOIN unnest(%s::bigint[], %s::int[]) AS u(id, attempt)
            ON a.id = u.id AND a.attempt = u.attempt
        WHERE a.status = %s
        ORDER BY a.id
        FOR UPDATE OF a
        """,
        [
            [action_id for action_id, _ in items],
            [attempt for _, attempt in items],
            ScheduledAction.Status.CLAIMED,
        ],
    )
    return {action.pk: action for action in rows}


def scheduled_actions_finish(*, items: list[list[int]]) -> int:
    """``scheduler.scheduled_action_finish`` for a batch: deletes the actions still held under
    these attempts, locked in id order first (see ``scheduled_actions_held``). Returns how
    many were deleted; the others belong to a newer attempt or are gone."""
    if not items:
        return 0
    with connection.cursor() as cursor:
        cursor.execute(
            """
            DELETE FROM campaigns_scheduledaction
            WHERE id = ANY(ARRAY(
                SELECT a.id FROM campaigns_scheduledaction AS a
                JOIN unnest(%s::bigint[], %s::int[]) AS u(id, attempt)
                    ON a.id = u.id AND a.attempt = u.attempt
                WHERE a.status = %s
                ORDER BY a.id
                FOR UPDATE OF a
            ))
            """,
            [
                [action_id for action_id, _ in items],
                [attempt for _, attempt in items],
                ScheduledAction.Status.CLAIMED,
            ],
        )
        return cursor.rowcount


def enrollment_wait_until(
    enrollment: Enrollment, now: datetime.datetime
) -> datetime.datetime | None:
    """When a paused enrollment may act again (None if it is not paused)."""
    if enrollment.state != Enrollment.State.PAUSED:
        return None
    return max(enrollment.paused_until or now + datetime.timedelta(hours=1), now)


def scheduled_actions_run(*, kind: str, items: list[list[int]]) -> int:
    """Run one batch of claimed actions of one kind. Returns how many did something."""
    handler = {"advance": _advance, "timeout": _timeout, "resume": _resume}[kind]
    done = 0
    for action_id, attempt in items:
        with transaction.atomic():
            action = scheduled_action_held(action_id=action_id, attempt=attempt)
            if action is None:
                continue
            enrollment = engine.enrollment_locked(enrollment_id=action.enrollment_id)
            now = timezone.now()
            if (
                enrollment is None
                or enrollment.step_seq != action.step_seq
                or enrollment.state
                not in (
                    Enrollment.State.ACTIVE,
                    Enrollment.State.PAUSED,
                )
            ):
                # The journey moved on (or ended) since this was scheduled.
                scheduler.scheduled_action_finish(action_id=action_id, attempt=attempt)
                continue
            if (
                kind != "resume"
                and enrollment.state == Enrollment.State.PAUSED
                and enrollment.paused_until is not None
                and enrollment.paused_until <= now
            ):
                _resume(action, enrollment, now)  # the pause is over; its resume may lag
            if kind != "resume":
                wake = enrollment_wait_until(enrollment, now)
                if wake is not None:
                    scheduler.scheduled_action_reschedule(
                        action_id=action_id,
                        attempt=attempt,
                        due_at=wake,
                        reason="enrollment paused",
                    )
                    continue
            if handler(action, enrollment, now):
                done += 1
            scheduler.scheduled_action_finish(action_id=action_id, attempt=attempt)
    return done


def _advance(action: ScheduledAction, enrollment: Enrollment, now: datetime.datetime) -> bool:
    step = engine.step_get(enrollment.plan_version.plan, enrollment.current_step)
    return engine.enrollment_transition(
        enrollment=enrollment,
        from_seq=action.step_seq,
        trigger="wait_elapsed",
        to_step=step.get("next"),
        cause=f"waited {step.get('duration', '')}".strip(),
        now=now,
    )


def _timeout(action: ScheduledAction, enrollment: Enrollment, now: datetime.datetime) -> bool:
    """Fire ``no_open``/``no_click``/``no_reply`` only if the awaited event has not happened.

    A real event that arrived first normally moved the enrollment already (its transition
    owns this step entry, so this one is refused). An awaited event that is stored but did
    not move it cancels the timeout: it follows the event's own branch when the step has
    one, and otherwise fires nothing, so the step waits for its other triggers and timeouts
    (an open on a step that only branches on replies must not end the journey).
    """
    trigger = action.payload.get("trigger", "")
    message_id = action.payload.get("message_id")
    step = engine.step_get(enrollment.plan_version.plan, enrollment.current_step)
    awaited = engine.TIMEOUT_AWAITS.get(trigger)
    if awaited is None or message_id is None:
        return False
    human_only = not (awaited == "open" and step.get("count_machine_opens"))
    if any(
        message_event_exists(
            tenant_id=enrollment.tenant_id,
            message_id=message_id,
            event_type=event_type,
            human_only=human_only,
        )
        for event_type in engine.AWAITED_EVENT_TYPES.get(awaited, (awaited,))
    ):
        branch = engine.step_edge(step, awaited)
        if branch is None:
            return False
        return engine.enrollment_transition(
            enrollment=enrollment,
            from_seq=action.step_seq,
            trigger=awaited,
            to_step=branch.target,
            cause=f"{awaited} happened before {trigger} fired",
            now=now,
            message_id=message_id,
        )
    edge = engine.step_edge(step, trigger)
    if edge is None:
        return False
    event_id = message_event_synthetic_record(
        tenant_id=enrollment.tenant_id,
        message_id=message_id,
        enrollment_id=enrollment.pk,
        event_type=trigger,
        key=f"timeout:{action.idempotency_key}",
        occurred_at=now,
        detail={"after": edge.after, "step": enrollment.current_step},
    )
    return engine.enrollment_transition(
        enrollment=enrollment,
        from_seq=action.step_seq,
        trigger=trigger,
        to_step=edge.target,
        cause=f"no {awaited} within {edge.after}",
        now=now,
        message_id=message_id,
        event_id=event_id,
    )


def _resume(action: ScheduledAction, enrollment: Enrollment, now: datetime.datetime) -> bool:
    if enrollment.state != Enrollment.State.PAUSED:
        return False
    if enrollment.paused_until and enrollment.paused_until > now + datetime.timedelta(seconds=5):
        return False  # paused again, later; that pause scheduled its own resume
    enrollment.state = Enrollment.State.ACTIVE
    enrollment.paused_until = None
    enrollment.stop_reason = ""
    enrollment.save(update_fields=["state", "paused_until", "stop_reason", "updated_at"])
    logger.info(
        "enrollment.resumed",
        extra={"tenant_id": enrollment.tenant_id, "enrollment_id": enrollment.pk},
    )
    return True


def scheduled_send_make_due(*, tenant_id: int, enrollment_id: int, step_seq: int) -> int:
    """Make the pending send of one step entry due now: for a ``sending`` message that
    webhook events proved sent, so the send path finishes its bookkeeping at once (it never
    sends a step entry whose ledger row exists). Returns how many actions it moved."""
    now = timezone.now()
    return ScheduledAction.objects.filter(
        tenant_id=tenant_id,
        enrollment_id=enrollment_id,
        step_seq=step_seq,
        kind=ScheduledAction.Kind.SEND,
        status=ScheduledAction.Status.PENDING,
    ).update(due_at=now, updated_at=now)


def scheduled_actions_release(
    *,
    reason_prefix: str,
    tenant_id: int | None = None,
    campaign_id: int | None = None,
    sender_identity_id: int | None = None,
) -> int:
    """Make sends held for ``reason_prefix`` (``tenant paused``, ``campaign paused``, …) due
    now instead of at their next re-check, once what held them was lifted. Returns how many.

    The send path re-checks everything when it runs them, so releasing too much is harmless:
    a send still held for another reason is simply held again. Runs in the caller's
    transaction, so a resume and its release commit together.
    """
    clauses = [
        sql.SQL("a.status = 'pending' AND a.kind IN ('send', 'sms') AND a.due_at > now()"),
        sql.SQL("a.last_error LIKE %s"),
    ]
    params: list = [reason_prefix.replace("%", r"\%").replace("_", r"\_") + "%"]
    if tenant_id is not None:
        clauses.append(sql.SQL("a.tenant_id = %s"))
        params.append(tenant_id)
    # Through the live enrollments (indexed by campaign and by identity), then each one's
    # actions (indexed by enrollment).
    for column, value in (("campaign_id", campaign_id), ("sender_identity_id", sender_identity_id)):
        if value is not None:
            clauses.append(
                sql.SQL(
                    "a.enrollment_id IN (SELECT e.id FROM campaigns_enrollment AS e"
                    " WHERE e.state IN ('active', 'paused') AND e.{} = %s)"
                ).format(sql.Identifier(column))
            )
            params.append(value)
    query = sql.SQL(
        "UPDATE campaigns_scheduledaction AS a SET due_at = now(), updated_at = now() WHERE {}"
    ).format(sql.SQL(" AND ").join(clauses))
    with connection.cursor() as cursor:
        cursor.execute(query.as_string(cursor.connection), params)
        released = cursor.rowcount
    if released:
        logger.info(
            "scheduled_actions.released",
            extra={"reason": reason_prefix, "tenant_id": tenant_id, "count": released},
        )
    return released
