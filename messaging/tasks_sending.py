from celery import shared_task


@shared_task(name="messaging.message_send_batch", ignore_result=True, acks_late=True)
def message_send_batch(items: list[list[int]]) -> int:
    """Idempotent by construction (fenced actions, one ledger row per step entry), so a
    redelivered batch — acks_late after a worker died — sends nothing twice."""
    from messaging.services import sending
    from outreach.metrics import metrics_add

    report = sending.message_send_batch(items=items)
    # One Redis round trip per batch, never per send.
    metrics_add(
        [
            ("sends", {"outcome": outcome}, getattr(report, outcome))
            for outcome in ("sent", "skipped", "rescheduled", "failed")
        ]
    )
    return report.sent
