"""Inbound Parse tasks. Arguments are ids; the stored receipt, not the message, is the truth."""

from celery import shared_task
from django.db import InterfaceError, OperationalError

from messaging.services import inbound


@shared_task(
    name="messaging.inbound_receipt_process",
    ignore_result=True,
    acks_late=True,
    autoretry_for=(OperationalError, InterfaceError),
    retry_backoff=2,
    retry_backoff_max=60,
    max_retries=5,
)
def inbound_receipt_process(tenant_id: int, receipt_id: int) -> None:
    # Routed to the events queue by CELERY_TASK_ROUTES ("messaging.inbound_*").
    # Lost connections and deadlocks are transient; anything else is left to the sweeper,
    # which counts attempts, rather than retried here.
    inbound.inbound_receipt_process(tenant_id=tenant_id, receipt_id=receipt_id)


@shared_task(
    name="maintenance.inbound_receipts_sweep", ignore_result=True, acks_late=True, expires=55
)
def inbound_receipts_sweep() -> int:
    return inbound.inbound_receipts_sweep()
