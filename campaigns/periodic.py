from outreach.periodic import Periodic

PERIODIC_TASKS = [
    Periodic(
        name="campaigns: sweep due scheduled actions",
        task="maintenance.scheduled_actions_sweep",
        every_seconds=1,
        expires_seconds=10,
    ),
]
