"""Per-tenant quotas on what a tenant may hold (leads, campaigns).

The owning service inserts, then calls ``tenant_quota_enforce`` in the same transaction:
it serialises the tenant's inserters of that resource on an advisory lock and counts, so
two concurrent imports cannot both squeeze under the limit (the second counts after the
first committed). Over the quota the whole insert is rolled back with HTTP 429 — nothing
half-done. A tenant without a quota (``NULL``) pays nothing: no lock, no count.

The daily send quota is not here: it is a Redis bucket in the send path
(``messaging.services.ratelimit``), and a send over it waits for the next UTC day.
"""

from collections.abc import Callable

from django.db import connection

from outreach.common.errors import ApplicationError
from outreach.tenancy.models import Tenant

_LOCK_NAMESPACE = 0x5154  # pg_advisory_xact_lock(namespace, tenant_id * 8 + resource)
_RESOURCES = {"lead_quota": (1, "leads"), "campaign_quota": (2, "campaigns")}


class QuotaExceeded(ApplicationError):
    status_code = 429


def tenant_quota_get(*, tenant_id: int, quota: str) -> int | None:
    return Tenant.objects.filter(pk=tenant_id).values_list(quota, flat=True).first()


def tenant_quota_enforce(
    *, tenant_id: int, quota: str, added: int, count: Callable[[], int]
) -> None:
    """Raise ``QuotaExceeded`` (429) if the tenant now holds more than its ``quota``
    (``lead_quota`` or ``campaign_quota``). Call it after inserting ``added`` rows, inside
    the inserting transaction; ``count`` counts the tenant's rows."""
    number, noun = _RESOURCES[quota]
    limit = tenant_quota_get(tenant_id=tenant_id, quota=quota)
    if limit is None or added <= 0:
        return
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT pg_advisory_xact_lock(%s, %s)", [_LOCK_NAMESPACE, tenant_id * 8 + number]
        )
    total = count()
    if total > limit:
        before = total - added
        raise QuotaExceeded(
            f"{noun} quota reached: this account may hold {limit} {noun} and holds {before}; "
            f"this request would add {added}",
            code="quota_exceeded",
            extra={"quota": [f"{quota} is {limit}; {max(limit - before, 0)} left"]},
        )
