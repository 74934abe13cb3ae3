"""SMS tasks. Arguments are ids; the ledger and the stored receipts, not the messages, are
the truth."""

from celery import shared_task
from django.db import InterfaceError, OperationalError


@shared_task(name="messaging.sms_send_batch", ignore_result=True, acks_late=True)
def sms_send_batch(items: list[list[int]]) -> int:
    """Idempotent by construction (fenced actions, one ledger row per step entry), so a
    redelivered batch sends nothing twice."""
    from messaging.services import sending_sms
    from outreach.metrics import metrics_add

    report = sending_sms.sms_send_batch(items=items)
    metrics_add(
        [
            ("sends", {"outcome": outcome}, getattr(report, outcome))
            for outcome in ("sent", "skipped", "rescheduled", "failed")
        ]
    )
    return report.sent


@shared_task(
    name="messaging.sms_receipt_process",
    ignore_result=True,
    acks_late=True,
    autoretry_for=(OperationalError, InterfaceError),
    retry_backoff=2,
    retry_backoff_max=60,
    max_retries=5,
)
def sms_receipt_process(receipt_id: int) -> None:
    # Lost connections and deadlocks are transient; anything else is left to the sweeper.
    from messaging.services import sms_events

    sms_events.sms_receipt_process(receipt_id=receipt_id)


@shared_task(name="maintenance.sms_receipts_sweep", ignore_result=True, acks_late=True, expires=25)
def sms_receipts_sweep() -> int:
    from messaging.services import sms_events

    return sms_events.sms_receipts_sweep()
