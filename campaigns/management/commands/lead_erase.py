"""``manage.py lead_erase --tenant demo --email jane@example.com --reason "request #123"``

A person's right to erasure: their personal data goes from every table, their live
enrollments stop, and their address stays suppressed only as a hash (see
``campaigns.services.erasure``). ``--dry-run`` does it all inside a transaction, prints what
it would erase, and rolls back. Running it again is harmless ("already erased"). Progress
bar on stderr (the erasure's steps: scanning a tenant's webhook bodies can take a while),
one summary line on stdout.
"""

from django.core.management.base import BaseCommand, CommandError, CommandParser
from tqdm import tqdm

from campaigns.services.erasure import (
    ERASURE_STEPS,
    lead_erase,
    lead_erased_before,
    lead_find_for_erasure,
)
from outreach.common.commands import tenant_resolve
from outreach.common.errors import ApplicationError
from outreach.tenancy.audit import actor_for_cli


class Command(BaseCommand):
    help = "Erase a lead's personal data on request (GDPR); the suppression is kept as a hash."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--tenant", required=True, help="slug or id")
        who = parser.add_mutually_exclusive_group(required=True)
        who.add_argument("--email", help="the person's address")
        who.add_argument("--lead-id", type=int, help="the lead's id")
        parser.add_argument("--reason", required=True, help="e.g. the request's reference")
        parser.add_argument("--actor", help="who you are (default: the OS user)")
        parser.add_argument("--dry-run", action="store_true", help="count, change nothing")
        parser.add_argument("--no-progress", action="store_true")

    def handle(self, *args, **options) -> None:
        tenant = tenant_resolve(options["tenant"])
        if not options["reason"].strip():
            raise CommandError("--reason: give the request's reference")
        lead_id = options["lead_id"]
        if lead_id is None:
            email = options["email"].strip()
            lead_id = lead_find_for_erasure(tenant_id=tenant.pk, email=email)
            if lead_id is None:
                if lead_erased_before(tenant_id=tenant.pk, email=email):
                    self.stdout.write(
                        f"{tenant.slug}: that address was erased before; nothing to do"
                    )
                    return
                raise CommandError(f"{tenant.slug} has no lead with the address {email!r}")
        with tqdm(
            total=len(ERASURE_STEPS),
            unit="step",
            desc=f"erasing lead {lead_id}",
            disable=options["no_progress"] or None,
            file=self.stderr._out,
        ) as bar:

            def done(step: str) -> None:
                bar.set_postfix_str(step, refresh=False)
                bar.update(1)

            try:
                report = lead_erase(
                    tenant_id=tenant.pk,
                    lead_id=lead_id,
                    actor=actor_for_cli(actor=options["actor"]),
                    reason=options["reason"],
                    dry_run=options["dry_run"],
                    progress=done,
                )
            except ApplicationError as exc:
                raise CommandError(f"{tenant.slug}: {exc.message}") from None
        prefix = "dry run (rolled back): " if options["dry_run"] else ""
        self.stdout.write(prefix + report.summary())
