from django.apps import AppConfig
from django.db import connections
from django.db.models.signals import post_migrate

# The tables the materialized views read: until they all exist there is nothing to create.
VIEW_SOURCES = ("analytics_hourlyrollup", "tenancy_tenant", "messaging_senderidentity")


def views_sync(sender, using: str = "default", **kwargs) -> None:
    """Create or update the materialized views after ``migrate``, when their tables exist.

    django-pgviews' own post-migrate sync is off (``MATERIALIZED_VIEWS_DISABLE_SYNC_ON_MIGRATE``):
    it also runs after migrating an app back to zero, when the views cannot be built."""
    with connections[using].cursor() as cursor:
        cursor.execute(
            "SELECT bool_and(to_regclass(t) IS NOT NULL) FROM unnest(%s::text[]) t",
            [list(VIEW_SOURCES)],
        )
        if not cursor.fetchone()[0]:
            return
    from django_pgviews.models import ViewSyncer

    ViewSyncer().run(
        force=True, update=True, materialized_views_check_sql_changed=True, using=using
    )


class AnalyticsConfig(AppConfig):
    name = "analytics"
    verbose_name = "Analytics"

    def ready(self) -> None:
        post_migrate.connect(views_sync, sender=self, dispatch_uid="analytics.views_sync")
