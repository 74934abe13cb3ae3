from celery import shared_task

from messaging.services import partitions
from messaging.tasks_events import webhook_receipt_normalise  # noqa: F401 (task registry)
from messaging.tasks_inbound import inbound_receipt_process  # noqa: F401 (task registry)
from messaging.tasks_sending import message_send_batch  # noqa: F401 (task registry)
from messaging.tasks_sms import (  # noqa: F401 (task registry)
    sms_receipt_process,
    sms_receipts_sweep,
    sms_send_batch,
)


@shared_task(name="maintenance.event_partitions_ensure", ignore_result=True, acks_late=True)
def event_partitions_ensure() -> int:
    created = partitions.event_partitions_ensure()
    partitions.event_default_partition_check()
    return created


@shared_task(name="maintenance.event_retention_apply", ignore_result=True, acks_late=True)
def event_retention_apply() -> None:
    partitions.event_retention_apply()
