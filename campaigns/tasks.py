"""Celery entry points of the engine. Arguments are ids; each body calls one service."""

from celery import shared_task
from django.conf import settings


def _dispatch(kind: str, items: list[list[int]]) -> None:
    # A short argsrepr: Celery would otherwise pretty-print every id pair into the message
    # header, a third of the sweep's publishing time.
    summary = f"[<{len(items)} {kind} actions>]"
    if kind == "send":
        from messaging.tasks_sending import message_send_batch

        message_send_batch.apply_async(args=[items], queue="sending", argsrepr=summary)
    elif kind == "sms":
        from messaging.tasks_sms import sms_send_batch

        sms_send_batch.apply_async(args=[items], queue="sending", argsrepr=summary)
    else:
        scheduled_actions_run.apply_async(args=[kind, items], queue="sending", argsrepr=summary)


@shared_task(name="maintenance.scheduled_actions_sweep", ignore_result=True, expires=10)
def scheduled_actions_sweep() -> int:
    """Beat fires this every second; two at once split the due rows (SKIP LOCKED)."""
    from campaigns.services import scheduler
    from outreach.metrics import beat_sweep_record

    claimed = scheduler.scheduled_actions_sweep(
        dispatch=_dispatch,
        batch_size=settings.SEND_BATCH_SIZE,
        lease_seconds=settings.SCHEDULED_ACTION_LEASE_SECONDS,
    )
    beat_sweep_record(claimed=claimed)  # /readyz checks that beat keeps sweeping
    return claimed


@shared_task(name="campaigns.scheduled_actions_run", ignore_result=True, acks_late=True)
def scheduled_actions_run(kind: str, items: list[list[int]]) -> int:
    from campaigns.services import actions

    return actions.scheduled_actions_run(kind=kind, items=items)
