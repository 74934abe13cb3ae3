"""``lead_erase``: a person's right to erasure (GDPR art. 17), in one transaction.

The lead's personal data goes from every table (see ``messaging.services.erasure`` for the
messaging side); its live enrollments stop; its address stays suppressed, but only as a
keyed hash (``suppression_hash``), so it is never mailed again even if someone imports it
anew. The lead row itself stays (the send ledger points at it) with a placeholder address
and nothing else. The enrollments' reasons and errors and their transitions' causes (a
provider's refusal may quote the address) have it replaced, as do the journey counts that
group enrollments by reason. The audit entry records counts, never the address.

The platform's global suppression list is left as it is: a global entry is the platform
operator's own record (a complaint or a bounce seen for every tenant), not the tenant's
data, so a tenant's erasure request does not reach it. The report says when the address is
on it, for the operator to decide.

Idempotent: an erased lead is recognised by its placeholder address and left alone; asked
by address after the erasure, the hashed suppression answers "already erased".
"""

import logging
from collections.abc import Callable
from dataclasses import asdict, dataclass, field

from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from campaigns.models import Enrollment, EnrollmentTransition, Lead
from campaigns.services import engine
from messaging.services.erasure import (
    ERASED_DOMAIN,
    MessagingErased,
    address_scrub,
    lead_messaging_erase,
)
from outreach.common.errors import NotFound
from outreach.tenancy.audit import audit_record
from suppression.models import Suppression
from suppression.services import email_normalise, suppression_hashes, suppression_keep_as_hash

logger = logging.getLogger(__name__)

# The steps of an erasure, in order: ``lead_erase(progress=...)`` is called with each name
# once it is done (the command's progress bar; the webhook bodies' scan is the long one).
ERASURE_STEPS = (
    "enrollments stopped",
    "messages, events, replies and webhook bodies",
    "enrollment reasons",
    "suppression kept as a hash",
    "lead",
    "audit entry",
)


@dataclass
class ErasureReport:
    lead_id: int | None
    already_erased: bool = False
    enrollments_stopped: int = 0
    messaging: MessagingErased = field(default_factory=MessagingErased)
    enrollment_texts: int = 0
    suppression_hash: str = ""
    global_suppressions_kept: int = 0

    def summary(self) -> str:
        if self.already_erased:
            return f"lead {self.lead_id or '(by address)'}: already erased, nothing to do"
        m = self.messaging
        line = (
            f"lead {self.lead_id}: erased; {self.enrollments_stopped} enrollments stopped, "
            f"{m.messages} messages, {m.events} events, {m.inbound_messages} replies, "
            f"{m.receipts} webhook bodies, {self.enrollment_texts} enrollment reasons, "
            f"{m.verdicts} verdicts cleaned; suppression kept as {self.suppression_hash[:19]}…"
        )
        if self.global_suppressions_kept:
            line += (
                "; the address is also on the platform's global suppression list, which is "
                "platform-owned and was kept"
            )
        return line


def _placeholder(lead_id: int) -> str:
    return f"erased-{lead_id}@{ERASED_DOMAIN}"


def lead_find_for_erasure(*, tenant_id: int, email: str) -> int | None:
    """The lead with this address, or None: also when it was erased already (then
    ``lead_erased_before`` says so)."""
    return (
        Lead.objects.for_tenant(tenant_id)
        .filter(email=email_normalise(email))
        .values_list("id", flat=True)
        .first()
    )


def lead_erased_before(*, tenant_id: int, email: str) -> bool:
    return Suppression.objects.filter(
        tenant_id=tenant_id, email__in=suppression_hashes(email)
    ).exists()


def _enrollment_texts_erase(*, tenant_id: int, lead_id: int, email: str, placeholder: str) -> int:
    """Replace the address in the lead's enrollments' ``stop_reason``/``last_error``, their
    transitions' ``cause`` and the journey counts grouped by reason; returns the rows."""
    from analytics.services.erasure import journey_reasons_erase

    changed = 0
    enrollments = Enrollment.objects.for_tenant(tenant_id).filter(lead_id=lead_id)
    for row in enrollments.filter(
        Q(stop_reason__icontains=email) | Q(last_error__icontains=email)
    ).values("id", "stop_reason", "last_error"):
        Enrollment.objects.filter(pk=row["id"], tenant_id=tenant_id).update(
            stop_reason=address_scrub(
                text=row["stop_reason"], email=email, placeholder=placeholder
            )[:200],
            last_error=address_scrub(text=row["last_error"], email=email, placeholder=placeholder),
        )
        changed += 1
    for row in (
        EnrollmentTransition.objects.filter(tenant_id=tenant_id, enrollment__lead_id=lead_id)
        .filter(cause__icontains=email)
        .values("id", "cause")
    ):
        EnrollmentTransition.objects.filter(pk=row["id"], tenant_id=tenant_id).update(
            cause=address_scrub(text=row["cause"], email=email, placeholder=placeholder)[:300]
        )
        changed += 1
    return changed + journey_reasons_erase(
        tenant_id=tenant_id, email=email, placeholder=placeholder
    )


def lead_erase(
    *,
    tenant_id: int,
    lead_id: int,
    actor: str,
    reason: str = "",
    dry_run: bool = False,
    progress: Callable[[str], None] | None = None,
) -> ErasureReport:
    """Erase the lead's personal data (see the module). ``dry_run`` does everything, counts
    it, and rolls it back. ``progress`` is told each of ``ERASURE_STEPS`` as it is done."""
    report = ErasureReport(lead_id=lead_id)
    done = progress or (lambda step: None)
    with transaction.atomic():
        lead = Lead.objects.for_tenant(tenant_id).select_for_update().filter(pk=lead_id).first()
        if lead is None:
            raise NotFound("Lead not found.")
        if lead.email.endswith("@" + ERASED_DOMAIN):
            report.already_erased = True
            return report
        email = lead.email
        now = timezone.now()
        live = (
            Enrollment.objects.for_tenant(tenant_id)
            .filter(lead_id=lead_id, state__in=[Enrollment.State.ACTIVE, Enrollment.State.PAUSED])
            .values_list("id", flat=True)
        )
        for enrollment in engine.enrollments_locked(enrollment_ids=list(live)).values():
            if engine.enrollment_stop(
                enrollment=enrollment, trigger="erased", reason="lead erased on request", now=now
            ):
                report.enrollments_stopped += 1
        done(ERASURE_STEPS[0])
        placeholder = _placeholder(lead_id)
        report.messaging = lead_messaging_erase(
            tenant_id=tenant_id, lead_id=lead_id, email=email, placeholder=placeholder
        )
        done(ERASURE_STEPS[1])
        report.enrollment_texts = _enrollment_texts_erase(
            tenant_id=tenant_id, lead_id=lead_id, email=email, placeholder=placeholder
        )
        done(ERASURE_STEPS[2])
        report.global_suppressions_kept = Suppression.objects.filter(
            tenant__isnull=True, email=email
        ).count()
        report.suppression_hash = suppression_keep_as_hash(
            tenant_id=tenant_id, email=email, note=f"lead {lead_id} erased on request"
        )
        done(ERASURE_STEPS[3])
        Lead.objects.filter(pk=lead_id, tenant_id=tenant_id).update(
            email=placeholder,
            first_name="",
            last_name="",
            company="",
            title="",
            timezone="",
            country="",
            phone="",
            custom_fields={},
            validation_status=Lead.Validation.INVALID,
            validation_reason="erased on request",
            is_role_address=False,
            is_disposable=False,
            updated_at=now,
        )
        done(ERASURE_STEPS[4])
        counts = {
            "enrollments_stopped": report.enrollments_stopped,
            **asdict(report.messaging),
            "enrollment_texts": report.enrollment_texts,
            "global_suppressions_kept": report.global_suppressions_kept,
        }
        audit_record(
            tenant_id=tenant_id,
            actor=actor,
            action="lead.erase",
            target_type="lead",
            target_id=lead_id,
            reason=reason,
            after=counts,
        )
        done(ERASURE_STEPS[5])
        if dry_run:
            transaction.set_rollback(True)
    if not dry_run:
        logger.info("lead.erased", extra={"tenant_id": tenant_id, "lead_id": lead_id, **counts})
    return report
