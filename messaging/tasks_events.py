"""Event Webhook tasks. Arguments are ids; the receipt row, not the message, is the truth."""

from celery import shared_task
from django.db import InterfaceError, OperationalError

from messaging.services import receipts


@shared_task(
    name="messaging.webhook_receipt_normalise",
    ignore_result=True,
    acks_late=True,
    autoretry_for=(OperationalError, InterfaceError),
    retry_backoff=2,
    retry_backoff_max=60,
    max_retries=5,
)
def webhook_receipt_normalise(receipt_id: int) -> None:
    # Deadlocks with other writers and lost connections are transient; anything else is
    # left to the sweeper (which counts attempts) rather than retried here.
    receipts.webhook_receipt_normalise(receipt_id=receipt_id)


@shared_task(
    name="maintenance.webhook_receipts_sweep", ignore_result=True, acks_late=True, expires=25
)
def webhook_receipts_sweep() -> int:
    return receipts.webhook_receipts_sweep()
