from outreach.periodic import Periodic

PERIODIC_TASKS = [
    Periodic(
        name="messaging: create upcoming event partitions",
        task="maintenance.event_partitions_ensure",
        every_seconds=6 * 3600,
        expires_seconds=3600,
    ),
]
