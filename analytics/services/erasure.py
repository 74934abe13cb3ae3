"""An erased person's address in the journey counts (why enrollments stopped).

The journey counts group enrollments by their ``stop_reason`` (``analytics_journeycount``,
fed by triggers through ``analytics_journeydelta``), and a provider's refusal may quote the
address. When an erasure rewrites the enrollments' reasons, the triggers queue a move from
the old reason to the new one, but the old bucket would stay behind with its text. This
rewrites the reason of the queued moves and of the counted buckets (merging a bucket into
the one with the rewritten reason), under the rollup lock, in the erasure's transaction.
"""

from django.db import connection

from analytics.models import JourneyCount, JourneyDelta
from analytics.services.rollup import ROLLUP_LOCK
from messaging.services.erasure import address_scrub

_REASON_LENGTH = 200


def journey_reasons_erase(*, tenant_id: int, email: str, placeholder: str) -> int:
    """Replace ``email`` in the tenant's journey reasons; returns the rows rewritten."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_advisory_xact_lock(%s)", [ROLLUP_LOCK])
    changed = 0
    for delta in JourneyDelta.objects.filter(tenant_id=tenant_id, reason__icontains=email):
        reason = address_scrub(text=delta.reason, email=email, placeholder=placeholder)
        if reason != delta.reason:
            JourneyDelta.objects.filter(pk=delta.pk, tenant_id=tenant_id).update(
                reason=reason[:_REASON_LENGTH]
            )
            changed += 1
    for bucket in JourneyCount.objects.filter(tenant_id=tenant_id, reason__icontains=email):
        reason = address_scrub(text=bucket.reason, email=email, placeholder=placeholder)
        if reason == bucket.reason:
            continue
        with connection.cursor() as cursor:
            cursor.execute(
                """
                INSERT INTO analytics_journeycount AS r
                    (tenant_id, campaign_id, plan_version_id, step, state, reason, enrollments)
                VALUES (%s, %s, %s, %s, %s, %s, %s)
                ON CONFLICT (tenant_id, campaign_id, plan_version_id, step, state, reason)
                DO UPDATE SET enrollments = r.enrollments + excluded.enrollments
                """,
                [
                    tenant_id,
                    bucket.campaign_id,
                    bucket.plan_version_id,
                    bucket.step,
                    bucket.state,
                    reason[:_REASON_LENGTH],
                    bucket.enrollments,
                ],
            )
        JourneyCount.objects.filter(pk=bucket.pk, tenant_id=tenant_id).delete()
        changed += 1
    return changed
