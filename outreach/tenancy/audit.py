"""The audit log: every control change, who made it, when, why, before and after.

``audit_record`` joins the caller's transaction, so a change and its entry commit together
or not at all. Entries are append-only (a database trigger refuses UPDATE and DELETE).
"""

import getpass
import logging
from typing import Any

from outreach.tenancy.models import AuditEntry

logger = logging.getLogger(__name__)

MAX_REASON = 2000


def actor_for_cli(*, actor: str | None = None) -> str:
    """``cli:<os user>`` unless the operator named themselves (``--actor``)."""
    if actor and actor.strip():
        return f"cli:{actor.strip()[:190]}"
    try:
        return f"cli:{getpass.getuser()}"
    except Exception:  # no login name in a bare container
        return "cli:unknown"


def actor_for_api_key(*, prefix: str) -> str:
    return f"api-key:{prefix}"


def actor_for_admin(*, username: str) -> str:
    return f"admin:{username}"


def actor_for_operator_api(*, username: str) -> str:
    """A staff user through the operator API (``/api/v1/operator/``), told apart from a
    click in the admin."""
    return f"operator-api:{username}"


def audit_record(
    *,
    tenant_id: int | None,
    actor: str,
    action: str,
    target_type: str,
    target_id: Any = "",
    reason: str = "",
    before: dict[str, Any] | None = None,
    after: dict[str, Any] | None = None,
) -> AuditEntry:
    """Write one entry in the caller's transaction."""
    entry = AuditEntry.objects.create(
        tenant_id=tenant_id,
        actor=actor[:200] or "unknown",
        action=action[:64],
        target_type=target_type[:64],
        target_id=str(target_id)[:64],
        reason=(reason or "").strip()[:MAX_REASON],
        before=before or {},
        after=after or {},
    )
    logger.info(
        "audit.recorded",
        extra={
            "tenant_id": tenant_id,
            "actor": entry.actor,
            "action": action,
            "target": f"{target_type}:{target_id}",
        },
    )
    return entry
