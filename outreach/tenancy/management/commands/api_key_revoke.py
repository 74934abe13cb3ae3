from django.core.management.base import BaseCommand, CommandError, CommandParser

from outreach.common.errors import ApplicationError
from outreach.tenancy.services import api_key_revoke


class Command(BaseCommand):
    help = "Revoke an API key by its prefix (the part before the dot). Requests with it get 401."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--prefix", required=True)

    def handle(self, *args, **options) -> None:
        try:
            api_key = api_key_revoke(prefix=options["prefix"])
        except ApplicationError as exc:
            raise CommandError(exc.message) from None
        self.stdout.write(
            f"revoked {api_key.prefix} ({api_key.name}) of tenant {api_key.tenant.slug}"
        )
