"""``manage.py event_retention [--dry-run]``: partitions ahead, DEFAULT watched, old events out.

The same work beat does (``maintenance.event_partitions_ensure`` every 6 hours,
``maintenance.event_retention_apply`` daily), on demand: create the monthly partitions
ahead, report rows in the DEFAULT partition (and alert their tenants), then expire raw events
past each tenant's plan (``settings.EVENT_RETENTION_MONTHS``) and dedup keys past
``EVENT_DEDUP_KEY_DAYS``. Rollups are kept. ``--dry-run`` says what would go and changes
nothing.
"""

from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandParser

from messaging.services import partitions


class Command(BaseCommand):
    help = (
        "Create event partitions ahead, report rows in DEFAULT, and expire raw events past "
        "each tenant's plan (rollups are kept)."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--dry-run", action="store_true", help="report what would be expired; change nothing"
        )

    def handle(self, *args: Any, dry_run: bool, **options: Any) -> None:
        created = 0 if dry_run else partitions.event_partitions_ensure()
        in_default = partitions.event_default_partition_check()
        result = partitions.event_retention_apply(dry_run=dry_run)
        plans = ", ".join(
            f"{plan} {months} months" for plan, months in settings.EVENT_RETENTION_MONTHS.items()
        )
        verb = "would drop" if dry_run else "dropped"
        self.stdout.write(f"event_retention: keeping the current month plus {plans}")
        self.stdout.write(f"  partitions created ahead: {created}")
        self.stdout.write(
            f"  partitions {verb}: {', '.join(result.dropped) or 'none'}"
            + (
                f"; locked, left for the next run: {', '.join(result.skipped)}"
                if result.skipped
                else ""
            )
        )
        rows = sum(result.deleted_events.values())
        verb = "would delete" if dry_run else "deleted"
        self.stdout.write(
            f"  events {verb} from kept partitions: {rows} ({len(result.deleted_events)} tenant(s));"
            f" dedup keys {verb}: {result.deleted_keys}"
        )
        if in_default:
            total = sum(found.rows for found in in_default)
            self.stderr.write(
                f"  DEFAULT partition holds {total} event(s) of {len(in_default)} tenant(s):"
                " no monthly partition covers their time (alert raised)"
            )
