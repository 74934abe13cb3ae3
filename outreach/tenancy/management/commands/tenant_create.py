import json

from django.core.management.base import BaseCommand, CommandError, CommandParser

from outreach.common.errors import ApplicationError
from outreach.tenancy.services import tenant_create, tenant_webhook_urls


class Command(BaseCommand):
    help = (
        "Create a tenant and print one JSON object: its id, slug, API key (shown only this "
        "once) and the webhook URLs to configure in its SendGrid account."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--name", required=True)
        parser.add_argument("--slug", help="Defaults to the slugified name.")
        parser.add_argument("--sendgrid-api-key", help="Stored encrypted; only its last 4 shown.")
        parser.add_argument(
            "--webhook-public-key",
            help="SendGrid Event Webhook verification key (base64, as SendGrid shows it).",
        )

    def handle(self, *args, **options) -> None:
        try:
            created = tenant_create(
                name=options["name"],
                slug=options["slug"],
                sendgrid_api_key=options["sendgrid_api_key"],
                webhook_public_key=options["webhook_public_key"],
            )
        except ApplicationError as exc:
            raise CommandError(exc.message) from None
        tenant = created.tenant
        self.stdout.write(
            json.dumps(
                {
                    "tenant_id": tenant.pk,
                    "public_id": str(tenant.public_id),
                    "name": tenant.name,
                    "slug": tenant.slug,
                    "api_key": created.key,
                    "api_key_prefix": created.api_key.prefix,
                    "sendgrid_api_key_last4": tenant.sendgrid_api_key_last4 or None,
                    "webhooks": tenant_webhook_urls(tenant=tenant),
                }
            )
        )
