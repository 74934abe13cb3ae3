import json

from django.core.management.base import BaseCommand, CommandError, CommandParser

from outreach.common.errors import ApplicationError
from outreach.tenancy.models import Tenant
from outreach.tenancy.services import api_key_create


class Command(BaseCommand):
    help = "Create an API key for a tenant and print it as JSON (the key is shown only once)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--tenant", required=True, metavar="SLUG")
        parser.add_argument("--name", required=True, help="What the key is for, e.g. 'crm-sync'.")

    def handle(self, *args, **options) -> None:
        tenant = Tenant.objects.filter(slug=options["tenant"]).first()
        if tenant is None:
            raise CommandError(f"no tenant with the slug '{options['tenant']}'")
        try:
            api_key, key = api_key_create(tenant_id=tenant.pk, name=options["name"])
        except ApplicationError as exc:
            raise CommandError(exc.message) from None
        self.stdout.write(
            json.dumps(
                {
                    "tenant": tenant.slug,
                    "name": api_key.name,
                    "prefix": api_key.prefix,
                    "api_key": key,
                }
            )
        )
