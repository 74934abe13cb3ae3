"""``manage.py tenant_delete --tenant SLUG --confirm SLUG``: a tenant and all it owns, gone.

Irreversible, so the slug is typed twice. Safe to run again if interrupted (see
``tenancy.services.tenant_delete``).
"""

from django.core.management.base import BaseCommand, CommandError, CommandParser

from outreach.common.errors import ApplicationError
from outreach.tenancy.models import Tenant
from outreach.tenancy.services import tenant_delete


class Command(BaseCommand):
    help = "Delete a tenant and every row it owns (irreversible). Rollups of other tenants stay."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--tenant", required=True, metavar="SLUG")
        parser.add_argument("--confirm", required=True, metavar="SLUG", help="the slug again")

    def handle(self, *args, **options) -> None:
        slug = options["tenant"]
        if options["confirm"] != slug:
            raise CommandError("--confirm must repeat the slug given to --tenant")
        tenant_id = Tenant.objects.filter(slug=slug).values_list("pk", flat=True).first()
        if tenant_id is None:
            raise CommandError(f"no tenant with the slug '{slug}'")
        try:
            deleted = tenant_delete(tenant_id=tenant_id)
        except ApplicationError as exc:
            raise CommandError(exc.message) from None
        rows = ", ".join(f"{n} {name}" for name, n in deleted.rows.items() if n)
        self.stdout.write(
            f"tenant_delete: {slug} deleted in {deleted.seconds:.1f} s ({rows or 'no rows'})"
        )
