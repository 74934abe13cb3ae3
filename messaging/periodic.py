from outreach.periodic import Periodic

PERIODIC_TASKS = [
    Periodic(
        name="messaging: create upcoming event partitions",
        task="maintenance.event_partitions_ensure",
        every_seconds=6 * 3600,
        expires_seconds=3600,
    ),
    Periodic(
        name="messaging: expire raw events past each tenant's plan, and old dedup keys",
        task="maintenance.event_retention_apply",
        every_seconds=24 * 3600,
        expires_seconds=3600,
    ),
    Periodic(
        name="messaging: re-process unprocessed webhook receipts",
        task="maintenance.webhook_receipts_sweep",
        every_seconds=30,
        expires_seconds=25,
    ),
    Periodic(
        name="messaging: process inbound replies whose task was lost",
        task="maintenance.inbound_receipts_sweep",
        every_seconds=60,
        expires_seconds=55,
    ),
    Periodic(
        name="messaging: process Twilio callbacks whose task was lost",
        task="maintenance.sms_receipts_sweep",
        every_seconds=30,
        expires_seconds=25,
    ),
]
