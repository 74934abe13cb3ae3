"""``manage.py analytics_backfill --since 2026-11-01 [--until ...] [--tenant demo]``

Rebuilds the hourly rollup of a range (and the journey counts) from the ledger and the event
table, one tenant-day per transaction, with a progress bar. Safe to run again, to interrupt,
and to run while campaigns send: see ``analytics.services.backfill``.
"""

import datetime

from django.core.management.base import BaseCommand, CommandError
from django.utils import timezone
from django.utils.dateparse import parse_date, parse_datetime
from tqdm import tqdm

from analytics.services.backfill import analytics_backfill, backfill_chunks
from messaging.services.partitions import event_retention_horizon
from outreach.tenancy.models import Tenant


def _moment(value: str, *, option: str) -> datetime.datetime:
    parsed = parse_datetime(value)
    if parsed is None:
        day = parse_date(value) if len(value) == 10 else None
        if day is None:
            raise CommandError(
                f"{option}: {value!r} is not a date (2026-11-01) or a time (2026-11-01T09:00Z)"
            )
        parsed = datetime.datetime.combine(day, datetime.time(), tzinfo=datetime.UTC)
    if timezone.is_naive(parsed):
        parsed = parsed.replace(tzinfo=datetime.UTC)
    return parsed.astimezone(datetime.UTC)


class Command(BaseCommand):
    help = "Rebuild analytics rollups for a range from the source tables (idempotent)."

    def add_arguments(self, parser) -> None:
        parser.add_argument("--since", required=True, help="start (date or ISO time, UTC)")
        parser.add_argument("--until", help="end, exclusive (default: now)")
        parser.add_argument(
            "--tenant", action="append", help="tenant slug or id (repeatable; default: all)"
        )
        parser.add_argument("--quiet", action="store_true", help="no progress bar")

    def handle(self, *args, since, until, tenant, quiet, **options) -> None:
        start = _moment(since, option="--since")
        end = _moment(until, option="--until") if until else timezone.now()
        # Whole hours: a bucket is rebuilt entirely or not at all.
        start = start.replace(minute=0, second=0, microsecond=0)
        if end.minute or end.second or end.microsecond:
            end = end.replace(minute=0, second=0, microsecond=0) + datetime.timedelta(hours=1)
        if start >= end:
            raise CommandError(f"--since ({start:%Y-%m-%d %H:%M}) must be before --until")
        tenant_ids = self._tenants(tenant)
        for tenant_id in tenant_ids:
            horizon = event_retention_horizon(tenant_id=tenant_id)
            if horizon is not None and start < horizon:
                raise CommandError(
                    f"--since ({start:%Y-%m-%d %H:%M}) is before tenant {tenant_id}'s oldest kept"
                    f" events ({horizon:%Y-%m-%d}): retention expired them, and rebuilding"
                    " would erase the rollups of that range"
                )
        chunks = len(backfill_chunks(since=start, until=end)) * len(tenant_ids)
        with tqdm(total=chunks, unit="tenant-day", disable=quiet, file=self.stderr._out) as bar:
            written = analytics_backfill(
                tenant_ids=tenant_ids, since=start, until=end, progress=bar.update
            )
        self.stdout.write(
            f"analytics_backfill: {len(tenant_ids)} tenant(s), {start:%Y-%m-%d %H:%M} to "
            f"{end:%Y-%m-%d %H:%M} UTC, {written} rollup rows written"
        )

    def _tenants(self, wanted: list[str] | None) -> list[int]:
        if not wanted:
            return list(Tenant.objects.order_by("pk").values_list("pk", flat=True))
        ids = []
        for value in wanted:
            query = Tenant.objects.filter(slug=value)
            if value.isdigit():
                query = Tenant.objects.filter(pk=int(value)) | query
            found = query.values_list("pk", flat=True).first()
            if found is None:
                raise CommandError(f"--tenant: no tenant with slug or id {value!r}")
            ids.append(found)
        return ids
