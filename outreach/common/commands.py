"""Shared parsing for operator commands: one readable line on bad input, never a traceback."""

import datetime

from django.core.management.base import CommandError
from django.utils import timezone
from django.utils.dateparse import parse_date, parse_datetime

from outreach.tenancy.models import Tenant


def moment_parse(value: str, *, option: str) -> datetime.datetime:
    """A date (``2026-11-01``, midnight UTC) or an ISO time (``2026-11-01T09:00Z``)."""
    try:
        parsed = parse_datetime(value)
    except ValueError:
        parsed = None
    if parsed is None:
        try:
            day = parse_date(value) if len(value) == 10 else None
        except ValueError:
            day = None
        if day is None:
            raise CommandError(
                f"{option}: {value!r} is not a date (2026-11-01) or a time (2026-11-01T09:00Z)"
            )
        parsed = datetime.datetime.combine(day, datetime.time(), tzinfo=datetime.UTC)
    if timezone.is_naive(parsed):
        parsed = parsed.replace(tzinfo=datetime.UTC)
    return parsed.astimezone(datetime.UTC)


def tenant_resolve(value: str, *, option: str = "--tenant") -> Tenant:
    """A tenant by slug or id."""
    query = Tenant.objects.filter(slug=value)
    if value.isdigit():
        query = Tenant.objects.filter(pk=int(value)) | query
    tenant = query.first()
    if tenant is None:
        raise CommandError(f"{option}: no tenant with slug or id {value!r}")
    return tenant
