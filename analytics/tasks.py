"""Analytics tasks: beat's hints to apply the delta queues and refresh the views.

Both are safe to run twice at once (advisory locks) and to lose (the next tick does the work).
"""

from celery import shared_task

from analytics.services import rollup


@shared_task(name="maintenance.analytics_refresh", ignore_result=True, expires=9)
def analytics_refresh() -> int:
    result = rollup.analytics_refresh()
    return result.hourly_deltas + result.journey_deltas


@shared_task(name="maintenance.analytics_views_refresh", ignore_result=True, expires=25)
def analytics_views_refresh() -> bool:
    return rollup.analytics_views_refresh()
