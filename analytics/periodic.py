from outreach.periodic import Periodic

PERIODIC_TASKS = [
    Periodic(
        name="analytics: apply new sends, events and enrollment moves to the rollups",
        task="maintenance.analytics_refresh",
        every_seconds=10,
        expires_seconds=9,
    ),
    Periodic(
        name="analytics: refresh the dashboard's daily views",
        task="maintenance.analytics_views_refresh",
        every_seconds=30,
        expires_seconds=25,
    ),
]
