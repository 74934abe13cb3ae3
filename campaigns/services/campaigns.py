"""Campaign lifecycle: create and edit, immutable plan versions, publish, status changes,
and moving live enrollments to another plan version with an explicit step map."""

import datetime
import logging
from dataclasses import dataclass
from typing import Any, Literal

from django.db import connection, transaction
from django.db.models import Max
from django.utils import timezone

from campaigns import plans
from campaigns.models import Campaign, CampaignPlanVersion, Enrollment, ScheduledAction
from campaigns.selectors import campaign_count
from campaigns.services import engine, scheduler
from campaigns.services.actions import scheduled_actions_release
from messaging.models import SenderIdentity
from outreach.common.errors import ApplicationError, NotFound
from outreach.tenancy.audit import audit_record
from outreach.tenancy.flags import Flag, tenant_flag_enabled
from outreach.tenancy.quotas import tenant_quota_enforce

logger = logging.getLogger(__name__)

StatusAction = Literal["activate", "pause", "resume", "archive"]

LIVE_STATES = (Enrollment.State.ACTIVE, Enrollment.State.PAUSED)
ARCHIVE_REASON = "campaign archived"
# The trigger the send path also records when it meets an archived campaign's enrollment.
ARCHIVE_TRIGGER = "campaign_archived"
# Enrollments stopped per locked batch when a campaign is archived: bounds the rows one
# statement locks while the whole archive still commits as one transaction.
ARCHIVE_BATCH = 1000

# What each status action may start from, and where it leads. Repeating an action that
# already took effect is a no-op, so a client may retry it safely.
_TRANSITIONS: dict[str, tuple[set[str], str]] = {
    "activate": ({Campaign.Status.DRAFT}, Campaign.Status.ACTIVE),
    "pause": ({Campaign.Status.ACTIVE}, Campaign.Status.PAUSED),
    "resume": ({Campaign.Status.PAUSED}, Campaign.Status.ACTIVE),
    "archive": (
        {Campaign.Status.DRAFT, Campaign.Status.ACTIVE, Campaign.Status.PAUSED},
        Campaign.Status.ARCHIVED,
    ),
}


def _campaign_locked(tenant_id: int, campaign_id: int) -> Campaign:
    campaign = (
        Campaign.objects.for_tenant(tenant_id)
        .select_for_update(of=("self",))
        .select_related("current_version")
        .filter(pk=campaign_id)
        .first()
    )
    if campaign is None:
        raise NotFound("Campaign not found.")
    return campaign


def _identity_get(tenant_id: int, identity_id: int) -> SenderIdentity:
    identity = SenderIdentity.objects.for_tenant(tenant_id).filter(pk=identity_id).first()
    if identity is None:
        raise ApplicationError(
            "no such sender identity",
            code="invalid",
            extra={"sender_identity_id": ["No sender identity with this id in your account."]},
        )
    return identity


def _refuse_if_archived(campaign: Campaign, what: str) -> None:
    if campaign.status == Campaign.Status.ARCHIVED:
        raise ApplicationError(
            f"the campaign is archived; {what} is no longer possible", code="archived"
        )


def campaign_create(
    *, tenant_id: int, name: str, sender_identity_id: int, description: str = ""
) -> Campaign:
    """A new campaign in ``draft``: it sends nothing until a version is published and it is
    activated."""
    identity = _identity_get(tenant_id, sender_identity_id)
    with transaction.atomic(durable=True):
        campaign = Campaign.objects.create(
            tenant_id=tenant_id, name=name, description=description, sender_identity=identity
        )
        tenant_quota_enforce(
            tenant_id=tenant_id,
            quota="campaign_quota",
            added=1,
            count=lambda: campaign_count(tenant_id=tenant_id),
        )
    logger.info("campaign.created", extra={"tenant_id": tenant_id, "campaign_id": campaign.pk})
    return campaign


def campaign_update(*, tenant_id: int, campaign_id: int, data: dict[str, Any]) -> Campaign:
    """Change name, description or sender identity. A new identity applies to enrollments
    created from now on; live ones keep the identity they started with."""
    with transaction.atomic(durable=True):
        campaign = _campaign_locked(tenant_id, campaign_id)
        _refuse_if_archived(campaign, "editing")
        fields = ["updated_at"]
        if "sender_identity_id" in data:
            campaign.sender_identity = _identity_get(tenant_id, data["sender_identity_id"])
            fields.append("sender_identity")
        for name in ("name", "description"):
            if name in data:
                setattr(campaign, name, data[name])
                fields.append(name)
        campaign.save(update_fields=fields)
    return campaign


@dataclass(frozen=True)
class VersionAdded:
    version: CampaignPlanVersion
    created: bool


@dataclass(frozen=True)
class PlanChecked:
    warnings: list[plans.PlanError]
    sms_segments: dict[str, plans.SmsSegments]  # body pointer → encoding, places, segments


def campaign_version_check(*, tenant_id: int, campaign_id: int, plan: Any) -> PlanChecked:
    """Validate a plan as ``campaign_version_add`` would, storing nothing. Returns the
    warnings of a valid plan (``plans.plan_warnings``) and the segment count of each of its
    SMS steps (``plans.plan_sms_segments``)."""
    if not Campaign.objects.for_tenant(tenant_id).filter(pk=campaign_id).exists():
        raise NotFound("Campaign not found.")
    sms_enabled = tenant_flag_enabled(tenant_id=tenant_id, flag=Flag.SMS)
    plans.plan_validate_or_raise(plan=plan, sms_enabled=sms_enabled)
    segments = plans.plan_sms_segments(plan=plan)
    return PlanChecked(
        warnings=plans.plan_warnings(plan=plan, sms_segments=segments), sms_segments=segments
    )


def campaign_version_add(*, tenant_id: int, campaign_id: int, plan: Any) -> VersionAdded:
    """Validate and store a plan as the campaign's next version.

    Idempotent on content: a plan whose checksum matches an existing version of this campaign
    returns that version (``created=False``) instead of a copy, so a retried request never
    makes a second version. The campaign row lock serialises version numbering.
    """
    # Validation is the slow part and needs no lock: do it before taking the campaign row.
    campaign_version_check(tenant_id=tenant_id, campaign_id=campaign_id, plan=plan)
    checksum = plans.plan_checksum(plan=plan)
    with transaction.atomic(durable=True):
        campaign = _campaign_locked(tenant_id, campaign_id)
        _refuse_if_archived(campaign, "adding a plan version")
        existing = CampaignPlanVersion.objects.filter(
            campaign_id=campaign.pk, checksum=checksum
        ).first()
        if existing is not None:
            return VersionAdded(existing, created=False)
        last = CampaignPlanVersion.objects.filter(campaign_id=campaign.pk).aggregate(
            last=Max("version")
        )["last"]
        version = CampaignPlanVersion.objects.create(
            tenant_id=tenant_id,
            campaign=campaign,
            version=(last or 0) + 1,
            plan=plan,
            checksum=checksum,
        )
    logger.info(
        "campaign.version_added",
        extra={"tenant_id": tenant_id, "campaign_id": campaign_id, "version": version.version},
    )
    return VersionAdded(version, created=True)


def _version_of(campaign: Campaign, number: int) -> CampaignPlanVersion:
    version = CampaignPlanVersion.objects.filter(campaign_id=campaign.pk, version=number).first()
    if version is None:
        raise NotFound(f"Campaign has no version {number}.")
    return version


def campaign_publish(*, tenant_id: int, campaign_id: int, version: int) -> Campaign:
    """Make ``version`` the one new enrollments start on. Enrollments already running stay on
    the version they started with (moving them is ``enrollments_migrate``). Publishing an
    older version again is how a campaign rolls back."""
    with transaction.atomic(durable=True):
        campaign = _campaign_locked(tenant_id, campaign_id)
        _refuse_if_archived(campaign, "publishing")
        plan_version = _version_of(campaign, version)
        if campaign.current_version_id == plan_version.pk:
            return campaign
        now = timezone.now()
        # Only published_at may change on a version: the immutability trigger allows it.
        CampaignPlanVersion.objects.filter(pk=plan_version.pk).update(published_at=now)
        plan_version.published_at = now
        campaign.current_version = plan_version
        campaign.save(update_fields=["current_version", "updated_at"])
    logger.info(
        "campaign.published",
        extra={"tenant_id": tenant_id, "campaign_id": campaign_id, "version": version},
    )
    return campaign


def campaign_status_set(
    *,
    tenant_id: int,
    campaign_id: int,
    action: StatusAction,
    actor: str = "system",
    reason: str = "",
) -> Campaign:
    """Activate, pause, resume or archive, and audit the change (``actor``, ``reason``).

    Pausing keeps enrollments and their scheduled actions: the send path holds due sends
    while the campaign is paused, and ``resume`` makes them due at once. Archiving is final:
    it stops every live enrollment (reason "campaign archived") and drops its pending
    actions, in the same transaction as the status change.
    """
    if action not in _TRANSITIONS:
        raise ApplicationError(f"unknown action {action!r}", code="invalid")
    allowed_from, target = _TRANSITIONS[action]
    stopped = 0
    with transaction.atomic(durable=True):
        campaign = _campaign_locked(tenant_id, campaign_id)
        if campaign.status == target and action != "archive":
            return campaign
        if campaign.status not in allowed_from and campaign.status != target:
            raise ApplicationError(_refusal(action, campaign.status), code="invalid_transition")
        if action == "activate" and campaign.current_version_id is None:
            raise ApplicationError(
                "the campaign has no published plan version; publish one first",
                code="not_published",
            )
        previous = campaign.status
        if campaign.status != target:
            campaign.status = target
            campaign.save(update_fields=["status", "updated_at"])
        if action == "archive":
            stopped = _live_enrollments_stop(campaign)
        if previous != target:
            audit_record(
                tenant_id=tenant_id,
                actor=actor,
                action=f"campaign.{action}",
                target_type="campaign",
                target_id=campaign_id,
                reason=reason,
                before={"status": previous},
                after={"status": target, **({"enrollments_stopped": stopped} if stopped else {})},
            )
        if previous == Campaign.Status.PAUSED and target == Campaign.Status.ACTIVE:
            scheduled_actions_release(
                reason_prefix="campaign paused", tenant_id=tenant_id, campaign_id=campaign_id
            )
    logger.info(
        "campaign.status_changed",
        extra={
            "tenant_id": tenant_id,
            "campaign_id": campaign_id,
            "status": target,
            "enrollments_stopped": stopped,
        },
    )
    return campaign


def _refusal(action: str, status: str) -> str:
    if status == Campaign.Status.ARCHIVED:
        return f"the campaign is archived; it cannot {action}"
    hints = {
        ("activate", "paused"): "it is paused: resume it instead",
        ("pause", "draft"): "it was never activated",
        ("resume", "draft"): "it was never activated: activate it instead",
    }
    return f"cannot {action} a {status} campaign: " + hints.get(
        (action, status), "not allowed from this status"
    )


def _live_enrollments_stop(campaign: Campaign) -> int:
    """Stop every live enrollment of ``campaign``, a locked batch at a time, set-based.

    Row for row this is ``engine.enrollment_stop(trigger="campaign_archived",
    reason="campaign archived")``: the transition row is inserted with ``ON CONFLICT DO
    NOTHING`` on the step entry (so an entry some other path already left is not stopped
    twice), the pending actions of the enrollments it stopped are deleted and their state set.
    Going through the engine one enrollment at a time costs three round trips each, which at
    10,000 enrollments kept the rows locked for minutes on a busy machine.
    """
    stopped = 0
    last_id = 0
    while True:
        batch = list(
            Enrollment.objects.select_for_update(of=("self",))
            .filter(
                tenant_id=campaign.tenant_id,
                campaign_id=campaign.pk,
                state__in=LIVE_STATES,
                pk__gt=last_id,
            )
            .order_by("pk")
            .values_list("pk", flat=True)[:ARCHIVE_BATCH]
        )
        if not batch:
            return stopped
        last_id = batch[-1]
        with connection.cursor() as cursor:
            cursor.execute(
                """
                INSERT INTO campaigns_enrollmenttransition
                    (tenant_id, enrollment_id, from_step, from_seq, to_step, trigger, cause,
                     message_id, event_id, created_at)
                SELECT tenant_id, id, current_step, step_seq, '', %s, %s, NULL, NULL, now()
                FROM campaigns_enrollment WHERE id = ANY(%s)
                ON CONFLICT (enrollment_id, from_seq) DO NOTHING
                RETURNING enrollment_id
                """,
                [ARCHIVE_TRIGGER, ARCHIVE_REASON, batch],
            )
            left = [row[0] for row in cursor.fetchall()]
            cursor.execute(
                "DELETE FROM campaigns_scheduledaction"
                " WHERE enrollment_id = ANY(%s) AND status = 'pending'",
                [left],
            )
            cursor.execute(
                """
                UPDATE campaigns_enrollment
                SET state = 'stopped', stop_reason = %s, finished_at = now(), updated_at = now()
                WHERE id = ANY(%s)
                """,
                [ARCHIVE_REASON, left],
            )
        stopped += len(left)


# -- Moving live enrollments to another version -------------------------------------------


@dataclass(frozen=True)
class MigrationOutcome:
    enrollment_id: int
    lead_id: int
    state: str
    from_version: int
    from_step: str
    outcome: Literal["moved", "stays", "error"]
    to_step: str | None
    reason: str


@dataclass(frozen=True)
class MigrationResult:
    to_version: int
    dry_run: bool
    outcomes: list[MigrationOutcome]

    @property
    def counts(self) -> dict[str, int]:
        counts = {"moved": 0, "stays": 0, "error": 0}
        for outcome in self.outcomes:
            counts[outcome.outcome] += 1
        return counts


def _outcome(row: dict, step_map: dict[str, str], target: CampaignPlanVersion) -> MigrationOutcome:
    current = row["current_step"]
    base = {
        "enrollment_id": row["id"],
        "lead_id": row["lead_id"],
        "state": row["state"],
        "from_version": row["plan_version__version"],
        "from_step": current,
    }
    if current not in step_map:
        return MigrationOutcome(
            **base,
            outcome="error",
            to_step=None,
            reason=f'step "{current}" is missing from the step map',
        )
    new_step = step_map[current]
    if new_step not in engine.plan_steps(target.plan):
        return MigrationOutcome(
            **base,
            outcome="error",
            to_step=new_step,
            reason=f'step "{new_step}" does not exist in version {target.version}',
        )
    if new_step == current:
        return MigrationOutcome(
            **base,
            outcome="stays",
            to_step=new_step,
            reason=f'stays on step "{current}"; its scheduled actions keep their times',
        )
    return MigrationOutcome(
        **base,
        outcome="moved",
        to_step=new_step,
        reason=f'moves from step "{current}" to step "{new_step}"; pending actions are '
        "replaced by those of the new step",
    )


def enrollments_migrate(
    *,
    tenant_id: int,
    campaign_id: int,
    to_version_id: int,
    step_map: dict[str, str],
    dry_run: bool,
) -> MigrationResult:
    """Move a campaign's live enrollments onto another plan version, step by step.

    Every live enrollment not yet on the target version gets an outcome: ``stays`` (mapped
    to a step of the same name: only its pinned version changes), ``moved`` (its pending
    actions are dropped and it enters the mapped step afresh, recorded as a ``migrated``
    transition) or ``error`` (its step is missing from the map, or the mapped step is not in
    the target version). A dry run reports and changes nothing. A real run works under row
    locks and is all or nothing: if any enrollment would end in ``error`` nothing moves, so
    a campaign is never left half on one version and half on another by accident.
    """
    if not isinstance(step_map, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in step_map.items()
    ):
        raise ApplicationError(
            "step_map must map step names to step names",
            code="invalid",
            extra={"step_map": ["Expected an object of step name → step name."]},
        )
    with transaction.atomic(durable=True):
        if dry_run:
            campaign = Campaign.objects.for_tenant(tenant_id).filter(pk=campaign_id).first()
            if campaign is None:
                raise NotFound("Campaign not found.")
        else:
            campaign = _campaign_locked(tenant_id, campaign_id)
        _refuse_if_archived(campaign, "moving enrollments")
        target = CampaignPlanVersion.objects.filter(
            campaign_id=campaign.pk, pk=to_version_id
        ).first()
        if target is None:
            raise ApplicationError(
                "no such version",
                code="invalid",
                extra={"to_version": ["This campaign has no such version."]},
            )
        if target.published_at is None:
            raise ApplicationError(
                f"version {target.version} was never published; publish it first",
                code="not_published",
                extra={"to_version": ["Publish this version before moving enrollments to it."]},
            )
        # Plain rows: the outcome needs no plan document of the versions being left.
        live = (
            Enrollment.objects.filter(
                tenant_id=tenant_id, campaign_id=campaign.pk, state__in=LIVE_STATES
            )
            .exclude(plan_version_id=target.pk)
            .order_by("pk")
        )
        if not dry_run:
            live = live.select_for_update(of=("self",))
        rows = list(live.values("id", "lead_id", "state", "current_step", "plan_version__version"))
        outcomes = [_outcome(row, step_map, target) for row in rows]
        result = MigrationResult(to_version=target.version, dry_run=dry_run, outcomes=outcomes)
        if dry_run:
            return result
        errors = _errors_by_step(outcomes)
        if errors:
            raise ApplicationError(
                f"{result.counts['error']} enrollment(s) cannot be moved; nothing was changed",
                code="migration_refused",
                extra=errors,
            )
        now = timezone.now()
        # Every one is re-pinned in one statement; staying enrollments keep their step entry
        # and its schedule, moving ones then enter their new step through the engine.
        Enrollment.objects.filter(pk__in=[o.enrollment_id for o in outcomes]).update(
            plan_version=target, updated_at=now
        )
        moving = {o.enrollment_id: o for o in outcomes if o.outcome == "moved"}
        for enrollment in (
            Enrollment.objects.filter(pk__in=list(moving))
            .select_related("lead", "sender_identity")
            .order_by("pk")
        ):
            _move_one(enrollment, moving[enrollment.pk], target, now)
    logger.info(
        "enrollments.migrated",
        extra={
            "tenant_id": tenant_id,
            "campaign_id": campaign_id,
            "to_version": target.version,
            **result.counts,
        },
    )
    return result


def _errors_by_step(outcomes: list[MigrationOutcome]) -> dict[str, list[str]]:
    counts: dict[tuple[str, str], int] = {}
    for outcome in outcomes:
        if outcome.outcome == "error":
            path = f"step_map/{outcome.from_step}"
            counts[(path, outcome.reason)] = counts.get((path, outcome.reason), 0) + 1
    errors: dict[str, list[str]] = {}
    for (path, reason), count in sorted(counts.items()):
        errors.setdefault(path, []).append(f"{reason} ({count} enrollment(s) are on it)")
    return errors


def _move_one(
    enrollment: Enrollment,
    outcome: MigrationOutcome,
    target: CampaignPlanVersion,
    now: datetime.datetime,
) -> None:
    """Enter the mapped step of ``target`` (already pinned in the database) as a new step
    entry, through the engine, which drops the old entry's pending actions and schedules the
    new step's."""
    enrollment.plan_version = target
    moved = engine.enrollment_transition(
        enrollment=enrollment,
        from_seq=enrollment.step_seq,
        trigger="migrated",
        to_step=outcome.to_step,
        cause=(
            f'moved from version {outcome.from_version} step "{outcome.from_step}" '
            f'to version {target.version} step "{outcome.to_step}"'
        ),
        now=now,
    )
    if not moved:
        return
    # The transition dropped every pending action of the old step entry, including the wake-up
    # of an out-of-office pause; a paused enrollment needs one for its new step entry.
    if enrollment.state == Enrollment.State.PAUSED and enrollment.paused_until is not None:
        until = enrollment.paused_until
        scheduler.scheduled_actions_create(
            actions=[
                scheduler.NewAction(
                    tenant_id=enrollment.tenant_id,
                    enrollment_id=enrollment.pk,
                    kind=ScheduledAction.Kind.RESUME,
                    step=enrollment.current_step,
                    step_seq=enrollment.step_seq,
                    due_at=until,
                    idempotency_key=f"{enrollment.pk}:{enrollment.step_seq}:resume:{until:%Y%m%d%H%M}",
                )
            ]
        )
