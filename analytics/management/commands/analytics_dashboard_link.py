"""``manage.py analytics_dashboard_link --tenant demo``: a read-only share link to a tenant's
dashboard, valid seven days, for people without an admin login (and for the demo)."""

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from analytics.views import share_url_build
from outreach.tenancy.models import Tenant


class Command(BaseCommand):
    help = "Print a signed, read-only link to a tenant's analytics dashboard (valid 7 days)."

    def add_arguments(self, parser) -> None:
        parser.add_argument("--tenant", required=True, help="tenant slug")
        parser.add_argument("--base-url", default=settings.PUBLIC_BASE_URL)

    def handle(self, *args, tenant: str, base_url: str, **options) -> None:
        found = Tenant.objects.filter(slug=tenant).first()
        if found is None:
            raise CommandError(f"--tenant: no tenant with slug {tenant!r}")
        self.stdout.write(share_url_build(tenant=found, base_url=base_url))
