"""A tenant's campaign-side rows, deleted for ``tenancy.services.tenant_delete``.

Two calls, because the messaging side sits in between: messages point at enrollments, and
transitions at messages. Every statement finds the tenant's rows through an index that
leads with ``tenant_id`` (or through its enrollments), in bounded batches.
"""

from django.db import connection, transaction

from outreach.common.bulk import rows_delete_batched


def campaigns_tenant_journeys_delete(*, tenant_id: int, batch: int = 10_000) -> dict[str, int]:
    """Scheduled actions and transitions: what points at messages and enrollments."""
    with transaction.atomic(), connection.cursor() as cursor:
        # Actions have no tenant index (a claim would pay for it); they are found through
        # the tenant's enrollments. Live work only, so one statement.
        cursor.execute(
            """
            DELETE FROM campaigns_scheduledaction AS a
            USING campaigns_enrollment AS e
            WHERE e.tenant_id = %s AND a.enrollment_id = e.id
            """,
            [tenant_id],
        )
        actions = cursor.rowcount
    transitions = rows_delete_batched(
        table="campaigns_enrollmenttransition",
        where="tenant_id = %(tenant)s",
        params={"tenant": tenant_id},
        batch=batch,
    )
    return {"scheduled_actions": actions, "transitions": transitions}


def campaigns_tenant_delete(*, tenant_id: int, batch: int = 10_000) -> dict[str, int]:
    """Enrollments, plan versions, campaigns and leads (once messages are gone)."""
    params = {"tenant": tenant_id}
    enrollments = rows_delete_batched(
        table="campaigns_enrollment", where="tenant_id = %(tenant)s", params=params, batch=batch
    )
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute(
            "UPDATE campaigns_campaign SET current_version_id = NULL WHERE tenant_id = %s",
            [tenant_id],
        )
        cursor.execute(
            "DELETE FROM campaigns_campaignplanversion WHERE tenant_id = %s", [tenant_id]
        )
        versions = cursor.rowcount
        cursor.execute("DELETE FROM campaigns_campaign WHERE tenant_id = %s", [tenant_id])
        campaigns = cursor.rowcount
    leads = rows_delete_batched(
        table="campaigns_lead", where="tenant_id = %(tenant)s", params=params, batch=batch
    )
    return {
        "enrollments": enrollments,
        "plan_versions": versions,
        "campaigns": campaigns,
        "leads": leads,
    }
